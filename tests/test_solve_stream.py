"""`POST /v1/solve` with `"stream": true` over HTTP against the real engine: one
`wave` event per search wave whose nodes rebuild the search tree, then the result."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from search_strategies.registry import STRATEGIES
from tests.servers import RunningServer, wait_for
from tests.sse_events import fold_nodes, parse_events, read_stream

QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"

#: Every strategy, small enough for a CPU, with room for several waves.
STEP = {"max_step_tokens": 16, "budget": {"max_tokens": 96}}
SEARCHES: dict[str, dict[str, Any]] = {
    "best_of_n": {"n": 4, "max_new_tokens": 48, "selection": "weighted"},
    "beam_search": {"n": 4, "beam_width": 2, **STEP},
    "dvts": {"n": 4, "beam_width": 2, **STEP},
    "mcts": {"simulations": 6, "expansion_width": 2, "wave_size": 2, **STEP},
    "revision": {"parallel_chains": 2, "max_revisions": 1, "max_new_tokens": 40},
    "particle_filtering": {"n": 4, **STEP},
    # The packaged table (fitted for this model): a probe, then its choice.
    "auto": {"budget": {"max_tokens": 400}},
}


def test_every_strategy_is_covered() -> None:
    assert set(SEARCHES) == set(STRATEGIES)


def stream_solve(client: httpx.Client, body: dict[str, Any]):
    with client.stream("POST", "/v1/solve", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return read_stream(response.iter_lines())


@pytest.mark.parametrize("strategy", sorted(SEARCHES))
def test_the_waves_rebuild_the_trace_and_the_result_matches_a_plain_request(
    float32_client: httpx.Client, strategy: str
) -> None:
    body = {
        "question": QUESTION,
        "strategy": strategy,
        "seed": 11,
        "return_trace": True,
        **SEARCHES[strategy],
    }
    stream = stream_solve(float32_client, body)
    names = [event.name for event in stream.events]
    assert names[-1] == "result" and names.count("result") == 1, names
    assert "error" not in names
    waves = stream.named("wave")
    live, final = waves[:-1], waves[-1]
    assert live and final["final"] and not any(w["final"] for w in live), waves
    result = stream.named("result")[0]

    # Folding every wave's nodes by id gives exactly the trace of the result.
    assert fold_nodes(waves) == sorted(result["trace"], key=lambda node: node["id"])
    # Each live wave reports only new or changed nodes, its usage, and what is left.
    assert [w["wave"] for w in live] == list(range(1, len(live) + 1))
    for earlier, later in zip(live, live[1:]):
        assert later["usage"]["generated_tokens"] >= earlier["usage"]["generated_tokens"]
    for wave in live:
        assert wave["nodes"], wave
        assert wave["usage"]["generated_tokens"] <= result["usage"]["generated_tokens"]
        remaining = wave["remaining"]
        if "budget" in body:
            assert remaining["tokens"] == max(
                0, body["budget"]["max_tokens"] - wave["usage"]["generated_tokens"]
            )
        assert remaining["time_s"] > 0

    # Streaming changes how the answer travels, not the search (float32: bit-identical).
    plain = float32_client.post("/v1/solve", json=body)
    assert plain.status_code == 200, plain.text
    plain_body = plain.json()
    # Usage to the token; only the prefix-cache hits differ, since the first run warmed
    # the cache for the second.
    assert _uncached(result["usage"]) == _uncached(plain_body["usage"])
    assert result["trace"] == plain_body["trace"]
    assert result["answer"] == plain_body["answer"]


def test_strategy_statistics_travel_in_the_waves(float32_client: httpx.Client) -> None:
    """MCTS's visits and the particle weights are in the nodes as the search goes."""
    mcts = stream_solve(
        float32_client, {"question": QUESTION, "strategy": "mcts", "seed": 3, **SEARCHES["mcts"]}
    )
    visited = [n for w in mcts.named("wave")[:-1] for n in w["nodes"] if n["visits"]]
    assert visited and all(n["value"] is not None for n in visited)
    particles = stream_solve(
        float32_client,
        {
            "question": QUESTION,
            "strategy": "particle_filtering",
            "seed": 3,
            **SEARCHES["particle_filtering"],
        },
    )
    first_wave = particles.named("wave")[0]
    weights = [n["weight"] for n in first_wave["nodes"] if n["parent"] == 0]
    assert len(weights) == 4 and abs(sum(weights) - 1) < 1e-6, first_wave


def test_a_bad_field_is_a_plain_400_before_any_event(client: httpx.Client) -> None:
    response = client.post(
        "/v1/solve", json={"question": QUESTION, "stream": True, "strategy": "beam_search", "n": 3}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert "beam_width" in response.json()["error"]["message"]


def test_a_client_that_leaves_cancels_the_search(ponder_server: RunningServer) -> None:
    body = {"question": QUESTION, "stream": True, "strategy": "best_of_n", "n": 16}
    with httpx.Client(base_url=ponder_server.url, timeout=60) as http:
        with http.stream("POST", "/v1/solve", json={**body, "max_new_tokens": 256}) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert wait_for(lambda: _running(http) > 0, 10), "search should be running"
            assert next(parse_events(lines)) is None  # a keepalive: still searching
        left = time.monotonic()
        assert wait_for(lambda: _running(http) == 0, 5), "engine still busy"
        assert time.monotonic() - left < 5


def _running(client: httpx.Client) -> int:
    return client.get("/health").json()["running_requests"]


def _uncached(usage: dict[str, int]) -> dict[str, int]:
    return {key: value for key, value in usage.items() if key != "cached_prompt_tokens"}


def test_auto_says_what_it_chose_on_both_routes(ponder_server: RunningServer) -> None:
    """`search.auto` on /v1/solve, and on each chat choice (`<model>@auto`, streamed too)."""
    import openai

    body = {"question": QUESTION, "strategy": "auto", "budget": {"max_tokens": 400}}
    with httpx.Client(base_url=ponder_server.url, timeout=300) as http:
        solved = http.post("/v1/solve", json=body)
    assert solved.status_code == 200, solved.text
    decision = solved.json()["search"]["auto"]
    assert decision["difficulty"] and 0 < decision["probe_tokens"]
    assert decision["chosen_strategy"] in set(STRATEGIES) - {"auto"}
    assert solved.json()["usage"]["generated_tokens"] > decision["probe_tokens"]

    sdk = openai.OpenAI(base_url=ponder_server.url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": QUESTION}]
    extra = {"search": {"budget": {"max_tokens": 400}}}
    model = "smollm2-135m-instruct@auto"
    reply = sdk.chat.completions.create(model=model, messages=messages, extra_body=extra)
    assert reply.choices[0].model_extra["search"]["auto"]["difficulty"]
    chunks = list(
        sdk.chat.completions.create(model=model, messages=messages, extra_body=extra, stream=True)
    )
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert last.choices[0].model_extra["search"]["auto"]["chosen_strategy"]
