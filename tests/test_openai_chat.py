"""`/v1/chat/completions` with the official `openai` SDK against the live session server.

Generation is kept small (tens of tokens, token budgets of ~200): the CPU is slow.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from search_strategies.registry import STRATEGIES
from tests.conftest import MAX_N, SSE_KEEPALIVE_S
from tests.servers import RunningServer, shifting_seeds_client, wait_for

MODEL = "smollm2-135m-instruct"
QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"
TURNS = [
    {"role": "system", "content": "Answer briefly. Put the final answer in \\boxed{}."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "2 + 2 = 4. The answer is \\boxed{4}."},
    {"role": "user", "content": QUESTION},
]


def _sdk(server: RunningServer, http: httpx.Client | None = None) -> openai.OpenAI:
    # No retries: a test must see the first answer, and 429/503 would be retried.
    return openai.OpenAI(
        base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300, http_client=http
    )


@pytest.fixture(scope="module")
def sdk(ponder_server: RunningServer) -> Iterator[openai.OpenAI]:
    """The shared server, seeds shifted per request like the `client` fixture's."""
    with _sdk(ponder_server, shifting_seeds_client(ponder_server.url)) as client:
        yield client


@pytest.fixture(scope="module")
def float32_sdk(float32_server: RunningServer) -> Iterator[openai.OpenAI]:
    """For claims of bit-identical repeats, which hold in float32 only."""
    with _sdk(float32_server) as client:
        yield client


def ask(sdk: openai.OpenAI, model: str = MODEL, **kwargs):
    kwargs.setdefault("messages", [{"role": "user", "content": QUESTION}])
    kwargs.setdefault("max_tokens", 32)
    return sdk.chat.completions.create(model=model, **kwargs)


def test_models_lists_plain_and_every_registered_strategy(sdk: openai.OpenAI) -> None:
    ids = [model.id for model in sdk.models.list()]
    assert ids == [MODEL] + [f"{MODEL}@{name}" for name in STRATEGIES]


def test_plain_chat_keeps_turns_through_the_chat_template(
    sdk: openai.OpenAI, embedded_model: Path
) -> None:
    from transformers import AutoTokenizer

    reply = ask(sdk, messages=TURNS, seed=3)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == MODEL
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    usage = reply.usage
    assert 1 <= usage.completion_tokens <= 32
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    search = usage.model_extra["search"]
    assert search["strategy"] == "best_of_n"
    assert search["engine_calls"] == 1 and search["nodes"] == 1  # plain: one sample
    # The prompt is exactly the chat template over the four turns (not one flat string).
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    rendered = tokenizer.apply_chat_template(TURNS, tokenize=False, add_generation_prompt=True)
    assert usage.prompt_tokens == len(tokenizer.encode(rendered, add_special_tokens=False))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_each_registered_strategy_answers_within_its_budget(
    sdk: openai.OpenAI, strategy: str
) -> None:
    reply = ask(
        sdk,
        model=f"{MODEL}@{strategy}",
        seed=5,
        extra_body={"search": {"budget": {"max_tokens": 200}}},
    )
    search = reply.usage.model_extra["search"]
    assert search["strategy"] == strategy
    assert 0 < reply.usage.completion_tokens <= 200
    assert search["engine_calls"] >= 1 and search["nodes"] >= 1
    assert len(search["stopped_reason"]) == 1
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].model_extra["search"]["stopped_reason"] == search["stopped_reason"][0]


def test_search_extension_overrides_the_model_default(sdk: openai.OpenAI) -> None:
    options = {"strategy": "best_of_n", "n": 3}
    reply = ask(sdk, max_tokens=24, seed=2, extra_body={"search": options})
    search = reply.usage.model_extra["search"]
    assert search["nodes"] == 3 and search["engine_calls"] == 1
    assert reply.choices[0].model_extra["search"]["candidates"] == 3


def test_n_choices_are_independent_searches_summed_in_usage(sdk: openai.OpenAI) -> None:
    reply = ask(sdk, n=2, seed=11, max_tokens=24)
    assert [choice.index for choice in reply.choices] == [0, 1]
    search = reply.usage.model_extra["search"]
    assert search["engine_calls"] == 2 and search["nodes"] == 2
    assert len(search["stopped_reason"]) == 2
    assert 2 <= reply.usage.completion_tokens <= 48


STREAMED_SEARCH = dict(
    model=f"{MODEL}@best_of_n", seed=17, max_tokens=24, extra_body={"search": {"n": 3}}
)


def _streamed_text(chunks: list) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_streaming_sends_progress_then_content_then_usage(sdk: openai.OpenAI) -> None:
    request = STREAMED_SEARCH
    chunks = list(ask(sdk, stream=True, stream_options={"include_usage": True}, **request))
    assert chunks[0].choices[0].delta.role == "assistant"
    kinds = []
    for chunk in chunks:
        if (chunk.model_extra or {}).get("search_progress"):
            kinds.append("progress")
        elif chunk.choices and chunk.choices[0].delta.content:
            kinds.append("content")
    assert "progress" in kinds and "content" in kinds
    assert kinds.index("content") > max(i for i, k in enumerate(kinds) if k == "progress")
    progress = next(
        c.model_extra["search_progress"]
        for c in chunks
        if (c.model_extra or {}).get("search_progress")
    )
    assert progress["wave"] == 1 and progress["nodes"] == 3
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish in (["stop"], ["length"])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == progress["generated_tokens"]
    assert _streamed_text(chunks)


def test_streamed_and_plain_answers_match_in_float32(float32_sdk: openai.OpenAI) -> None:
    """Same seed with and without streaming: the same search, so the same answer
    (a bit-identical repeat: the float32 promise, docs/reproducibility.md)."""
    streamed = _streamed_text(list(ask(float32_sdk, stream=True, **STREAMED_SEARCH)))
    assert streamed == ask(float32_sdk, **STREAMED_SEARCH).choices[0].message.content


def test_a_silent_search_wave_keeps_the_stream_alive(ponder_server: RunningServer) -> None:
    """While a wave runs nothing else is sent, so a comment goes out every keepalive_s;
    SSE clients skip comments (the SDK tests above stream through them)."""
    body = {
        "model": f"{MODEL}@best_of_n",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 48,
        "seed": 5,
        "stream": True,
        "search": {"n": 4},
    }
    with httpx.Client(base_url=ponder_server.url, timeout=300) as http:
        started = time.monotonic()
        with http.stream("POST", "/v1/chat/completions", json=body) as stream:
            lines = [line for line in stream.iter_lines() if line]
        elapsed = time.monotonic() - started
    assert all(line == ": keepalive" or line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    progress = next(i for i, line in enumerate(lines) if "search_progress" in line)
    waiting = lines[:progress].count(": keepalive")
    assert waiting >= 1, f"no keepalive during a {elapsed:.1f} s search"
    assert lines.count(": keepalive") <= elapsed / SSE_KEEPALIVE_S + 1  # not a flood


def test_closing_the_stream_cancels_the_search(
    sdk: openai.OpenAI, ponder_server: RunningServer
) -> None:
    stream = ask(
        sdk,
        stream=True,
        max_tokens=256,
        extra_body={"search": {"n": 16}},
        model=f"{MODEL}@best_of_n",
    )
    with httpx.Client(base_url=ponder_server.url, timeout=30) as watcher:
        next(iter(stream))  # the role chunk: the search has started
        assert wait_for(lambda: _running(watcher) > 0, 5), "search should be running"
        stream.close()
        started = time.monotonic()
        assert wait_for(lambda: _running(watcher) == 0, 5), "engine still busy"
        assert time.monotonic() - started < 5


def test_non_streaming_disconnect_cancels_the_search(ponder_server: RunningServer) -> None:
    impatient = openai.OpenAI(
        base_url=ponder_server.url + "/v1", api_key="x", max_retries=0, timeout=3
    )
    with pytest.raises(openai.APITimeoutError):
        ask(impatient, max_tokens=256, extra_body={"search": {"n": 16}})
    with httpx.Client(base_url=ponder_server.url, timeout=30) as watcher:
        assert wait_for(lambda: _running(watcher) == 0, 5)


@pytest.mark.parametrize(
    ("kwargs", "error", "param", "words"),
    [
        (dict(model="gpt-4o"), openai.NotFoundError, "model", "does not exist"),
        (dict(model=f"{MODEL}@telepathy"), openai.NotFoundError, "model", f"{MODEL}@best_of_n"),
        (dict(temperature="hot"), openai.BadRequestError, "temperature", "valid number"),
        (dict(n=0), openai.BadRequestError, "n", "greater than or equal to 1"),
        (dict(messages=[]), openai.BadRequestError, "messages", "at least 1 item"),
        (
            dict(messages=[{"role": "tool", "content": "x"}]),
            openai.BadRequestError,
            "messages.0.role",
            "'system', 'developer', 'user' or 'assistant'",
        ),
        (
            dict(messages=[{"role": "assistant", "content": "hi"}]),
            openai.BadRequestError,
            "messages",
            "last message must have role 'user'",
        ),
        (
            dict(extra_body={"search": {"n": MAX_N + 1}}),
            openai.BadRequestError,
            "search.n",
            f"max_n={MAX_N}",
        ),
        (dict(max_tokens=10**6), openai.BadRequestError, "max_tokens", "max_new_tokens="),
        (
            dict(extra_body={"search": {"strategy": "telepathy"}}),
            openai.BadRequestError,
            "search.strategy",
            "unknown strategy",
        ),
        (
            dict(extra_body={"search": {"budget": {"max_tokens": 10**9}}}),
            openai.BadRequestError,
            "search.budget.max_tokens",
            "server maximum max_tokens",
        ),
    ],
)
def test_errors_raise_the_sdk_exception_naming_the_field(
    sdk: openai.OpenAI, kwargs: dict, error: type, param: str, words: str
) -> None:
    with pytest.raises(error) as raised:
        ask(sdk, **kwargs)
    body = raised.value.body
    assert body["param"] == param, body
    assert words in body["message"], body


def test_prompt_longer_than_the_context_is_a_400(sdk: openai.OpenAI) -> None:
    long_question = "Count the marbles. " * 600  # ~3,000 tokens; the server's context is 2,048
    with pytest.raises(openai.BadRequestError) as raised:
        ask(sdk, messages=[{"role": "user", "content": long_question}])
    body = raised.value.body
    assert body["code"] == "context_length_exceeded", body
    assert "maximum model length (context) is 2048 tokens" in body["message"], body


def test_unknown_fields_are_ignored_like_openai(sdk: openai.OpenAI) -> None:
    reply = ask(
        sdk, max_tokens=8, seed=1, user="u-1", extra_body={"logit_bias": {}, "some_future_field": 1}
    )
    assert reply.choices[0].message.content is not None


def _running(client: httpx.Client) -> int:
    return client.get("/health").json()["running_requests"]
