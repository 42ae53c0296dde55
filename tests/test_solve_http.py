"""`/v1/solve`, `/health` and `/v1/models` over HTTP against the real engine."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.conftest import MAX_N, MAX_NEW_TOKENS
from tests.servers import wait_for as _wait_for

QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"


def solve(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/v1/solve", json={"question": QUESTION, **body})


def test_health_and_models(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok"
    assert health["model"] == "smollm2-135m-instruct"
    models = client.get("/v1/models").json()
    # The plain model first; `<model>@<strategy>` ids follow (test_openai_chat.py).
    assert models["data"][0]["id"] == "smollm2-135m-instruct"


def test_best_of_n_uses_one_engine_call_and_counts_every_token(client: httpx.Client) -> None:
    response = solve(client, strategy="best_of_n", n=6, max_new_tokens=48, seed=7)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["candidates"]) == 6
    assert body["usage"]["engine_calls"] == 1
    assert body["usage"]["generated_tokens"] == sum(c["num_tokens"] for c in body["candidates"])
    assert body["usage"]["prompt_tokens"] > 20
    assert body["stopped_reason"] == "completed"
    assert body["timing"]["total_s"] >= body["timing"]["search_s"] > 0
    for candidate in body["candidates"]:
        assert 1 <= candidate["num_tokens"] <= 48
        assert candidate["finish_reason"] in {"stop", "length"}
        assert candidate["mean_logprob"] < 0
        assert 0 <= candidate["score"] <= 1
    chosen = next(c for c in body["candidates"] if c["text"] == body["answer_text"])
    assert chosen["answer"] == body["answer"]
    # Six 48-token answers to a question with numbers in it: some carry an answer
    # (the last number counts), or the vote below would be untested.
    assert body["answer"] is not None, body["candidates"]
    # Majority vote: no other answer has more votes than the chosen one.
    votes = [c["answer"] for c in body["candidates"]]
    assert all(votes.count(body["answer"]) >= votes.count(a) for a in votes if a)


def test_same_seed_same_answer(float32_client: httpx.Client) -> None:
    """Bit-identical repeats are the float32 promise (docs/reproducibility.md)."""
    request = dict(strategy="best_of_n", n=4, max_new_tokens=40, seed=1234)
    first, second = (
        solve(float32_client, **request).json(),
        solve(float32_client, **request).json(),
    )
    assert [c["text"] for c in first["candidates"]] == [c["text"] for c in second["candidates"]]
    assert first["answer"] == second["answer"]
    other = solve(float32_client, **{**request, "seed": 4321}).json()
    assert [c["text"] for c in other["candidates"]] != [c["text"] for c in first["candidates"]]


def test_different_seeds_draw_different_samples_in_any_dtype(client: httpx.Client) -> None:
    request = dict(strategy="best_of_n", n=4, max_new_tokens=40)
    texts = [
        [c["text"] for c in solve(client, **request, seed=seed).json()["candidates"]]
        for seed in (1234, 4321)
    ]
    assert all(len(sample) == 4 for sample in texts) and texts[0] != texts[1]


def test_weighted_selection_uses_one_batched_reward_call(client: httpx.Client) -> None:
    body = solve(client, n=6, max_new_tokens=64, seed=21, selection="weighted").json()
    assert body["reward"] == "arithmetic"
    assert body["usage"]["reward_calls"] == 1 and body["usage"]["engine_calls"] == 1
    assert body["usage"]["scored_steps"] >= 6
    totals: dict[str, float] = {}
    for candidate in body["candidates"]:
        assert 0 <= candidate["score"] <= 1
        if candidate["answer"] is not None:
            totals[candidate["answer"]] = totals.get(candidate["answer"], 0) + candidate["score"]
    assert totals, "no sample has an answer: the weighted vote is untested"
    assert totals[body["answer"]] == max(totals.values())


SELF_JUDGE = dict(n=3, max_new_tokens=48, seed=5, selection="max_reward", reward="self-judge")


def test_self_judge_scores_every_step_in_one_engine_call(client: httpx.Client) -> None:
    first = solve(client, **SELF_JUDGE).json()
    assert first["reward"] == "self-judge"
    # One engine call samples, one more (the judge) scores all steps of all samples.
    assert first["usage"]["reward_calls"] == 1
    assert first["usage"]["scored_steps"] >= 3
    scores = [c["score"] for c in first["candidates"]]
    assert all(0 <= s <= 1 for s in scores)
    assert first["answer_text"] == max(first["candidates"], key=lambda c: c["score"])["text"]


def test_self_judge_repeats_exactly_in_float32(float32_client: httpx.Client) -> None:
    """In bf16 the judge's second run reads its prompts from the prefix cache and
    rounds differently (0.367 vs 0.314 seen on an AMX Xeon); float32 repeats."""
    first, second = (
        solve(float32_client, **SELF_JUDGE).json(),
        solve(float32_client, **SELF_JUDGE).json(),
    )
    assert [c["text"] for c in first["candidates"]] == [c["text"] for c in second["candidates"]]
    assert [c["score"] for c in first["candidates"]] == pytest.approx(
        [c["score"] for c in second["candidates"]], rel=1e-4
    )


def test_trace_lists_root_and_every_sample(client: httpx.Client) -> None:
    body = solve(client, n=3, max_new_tokens=24, seed=3, return_trace=True).json()
    trace = body["trace"]
    assert len(trace) == 4 and trace[0]["parent"] is None
    assert {node["parent"] for node in trace[1:]} == {0}
    chosen = [node for node in trace[1:] if node["chosen"]]
    assert len(chosen) == 1 and chosen[0]["text"] == body["answer_text"]
    assert sum(n["num_tokens"] for n in trace[1:]) == body["usage"]["generated_tokens"]


def test_token_budget_caps_every_sample(client: httpx.Client) -> None:
    body = solve(client, n=4, max_new_tokens=64, seed=5, budget={"max_tokens": 40}).json()
    assert body["usage"]["generated_tokens"] <= 40
    assert all(c["num_tokens"] <= 10 for c in body["candidates"])
    assert body["stopped_reason"] == "token_budget"


def test_deadline_stops_search_and_aborts_engine_requests(client: httpx.Client) -> None:
    started = time.monotonic()
    body = solve(
        client, n=8, max_new_tokens=MAX_NEW_TOKENS, seed=9, budget={"time_limit_s": 1.5}
    ).json()
    assert time.monotonic() - started < 10
    assert body["stopped_reason"] == "deadline"
    assert body["answer"] is None and body["candidates"] == []
    assert _engine_idle(client)


def test_disconnect_cancels_engine_requests(ponder_server) -> None:
    """A client that gives up must not leave its samples running in the engine."""
    outcome: list[str] = []

    def impatient_client() -> None:
        with httpx.Client(base_url=ponder_server.url, timeout=4) as impatient:
            try:
                impatient.post(
                    "/v1/solve",
                    json={"question": QUESTION, "n": 16, "max_new_tokens": MAX_NEW_TOKENS},
                )
                outcome.append("answered")
            except httpx.ReadTimeout:
                outcome.append("gave up")

    thread = threading.Thread(target=impatient_client)
    with httpx.Client(base_url=ponder_server.url, timeout=30) as watcher:
        thread.start()
        busy = _wait_for(lambda: watcher.get("/health").json()["running_requests"] > 0, 4)
        thread.join()
        assert outcome == ["gave up"]
        assert busy, "the samples should be running while the client waits"
        assert _engine_idle(watcher)


def _engine_idle(client: httpx.Client, within_s: float = 10.0) -> bool:
    return _wait_for(lambda: client.get("/health").json()["running_requests"] == 0, within_s)


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"question": ""}, 400, "question", "at least 1 character"),
        ({"question": None}, 400, "question", "valid string"),
        ({"question": "   "}, 400, "question", "must not be empty"),
        ({"n": 0}, 400, "n", "greater than or equal to 1"),
        ({"n": MAX_N + 1}, 400, "n", f"max_n={MAX_N}"),
        ({"strategy": "telepathy"}, 400, "strategy", "unknown strategy 'telepathy'"),
        ({"temperature": "hot"}, 400, "temperature", "valid number"),
        ({"nn": 4}, 400, "nn", "unknown field"),
        ({"max_new_tokens": MAX_NEW_TOKENS + 1}, 400, "max_new_tokens", "server maximum"),
        ({"budget": {"max_tokens": 0}}, 400, "budget.max_tokens", "greater than or equal"),
        ({"budget": {"time_limit_s": 10**6}}, 400, "budget.time_limit_s", "server maximum"),
        ({"budget": {"tokens": 5}}, 400, "budget.tokens", "unknown field"),
        ({"selection": "vibes"}, 400, "selection", "'majority', 'weighted' or 'max_reward'"),
        ({"reward": "oracle"}, 400, "reward", "configured: arithmetic"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    client: httpx.Client, body: dict, status: int, param: str, words: str
) -> None:
    response = client.post("/v1/solve", json={"question": QUESTION, **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
def test_malformed_body_is_a_400(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/v1/solve", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_unknown_route_and_method_answer_in_error_format(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong_method = client.get("/v1/solve")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["message"]


PREFIX = "Each bag has 4 marbles and there are 3 bags.\n\n3 * 4 = 12"


def test_answer_prefix_is_continued_not_repeated(client: httpx.Client, embedded_model) -> None:
    """The prompt is the chat with the assistant's turn opened by the prefix and left
    open: exactly the prefix's tokens longer than the plain prompt, and the candidates
    hold what follows it."""
    from transformers import AutoTokenizer

    plain = solve(client, strategy="best_of_n", n=2, max_new_tokens=24, seed=5).json()
    body = {"strategy": "best_of_n", "n": 2, "max_new_tokens": 24, "seed": 5}
    response = solve(client, **body, answer_prefix=PREFIX)
    assert response.status_code == 200, response.text
    continued = response.json()
    prefix_tokens = AutoTokenizer.from_pretrained(embedded_model).encode(
        PREFIX, add_special_tokens=False
    )
    assert continued["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"] + len(
        prefix_tokens
    )
    assert all(not c["text"].startswith(PREFIX[:20]) for c in continued["candidates"])


@pytest.mark.parametrize(
    "body, says",
    [
        ({"strategy": "best_of_n", "n": 2, "selection": "weighted"}, "needs selection=majority"),
        ({"strategy": "beam_search", "n": 2, "beam_width": 2}, "answer_prefix"),
    ],
)
def test_answer_prefix_outside_a_majority_vote_is_400(client: httpx.Client, body, says) -> None:
    response = solve(client, **body, max_new_tokens=16, answer_prefix=PREFIX)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]
