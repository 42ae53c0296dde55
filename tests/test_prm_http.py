"""A learned PRM through Ponder's `/v1/solve`: in-process engine, ensemble, clean shutdown.

The server runs the embedded policy and the tiny Qwen2 PRM as a second in-process
vLLM engine (`--prm`), with `--reward arithmetic:0.5,prm:0.5` so the ensemble and
both members are selectable. Stopping it checks that the lifespan shut both
engines down.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.servers import ENGINE_FLAGS, RunningServer, ponder_command, start_server

QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"
REQUEST = {"question": QUESTION, "n": 4, "max_new_tokens": 48, "seed": 17,
           "selection": "weighted", "aggregation": "mean"}


@pytest.fixture(scope="module")
def prm_server(
    embedded_model: Path, tiny_prms: dict[str, Path], tmp_path_factory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("ponder-prm") / "server.log"
    server = start_server(
        ponder_command(
            "--policy", str(embedded_model), "--block-size", "32",
            "--prm", str(tiny_prms["qwen"]), "--prm-kind", "qwen",
            "--prm-gpu-memory-utilization", "0.1", "--reward", "arithmetic:0.5,prm:0.5",
            *ENGINE_FLAGS,
        ),
        log,
        "/health",
    )
    yield server
    leftovers = server.stop()
    assert server.process.returncode in (0, -signal.SIGTERM), server.log_tail()
    assert "Application shutdown complete" in server.log_tail()
    assert not leftovers, f"engine processes outlived the server: {leftovers}"


@pytest.fixture(scope="module")
def http(prm_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=prm_server.url, timeout=300) as client:
        yield client


def solve(http: httpx.Client, **body) -> dict:
    response = http.post("/v1/solve", json={**REQUEST, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_weighted_best_of_n_with_the_prm(http: httpx.Client) -> None:
    body = solve(http, reward="prm")
    assert body["reward"] == "prm" and body["reward_error"] is None
    usage = body["usage"]
    assert usage["reward_calls"] == 1 and usage["engine_calls"] == 1
    assert usage["scored_steps"] >= 4
    assert usage["reward_tokens"] > usage["scored_steps"] * 5  # rendered PRM inputs
    totals: dict[str, float] = {}
    for candidate in body["candidates"]:
        assert 0 < candidate["score"] < 1
        if candidate["answer"] is not None:
            totals[candidate["answer"]] = totals.get(candidate["answer"], 0) + candidate["score"]
    if totals:
        assert totals[body["answer"]] == max(totals.values())
    # A deterministic PRM: the same samples get the same scores.
    again = solve(http, reward="prm")
    assert [c["score"] for c in again["candidates"]] == [c["score"] for c in body["candidates"]]


def test_ensemble_is_the_weighted_mean_of_its_members(http: httpx.Client) -> None:
    ensemble = solve(http)  # the default reward is the ensemble
    assert ensemble["reward"] == "ensemble"
    prm, arithmetic = solve(http, reward="prm"), solve(http, reward="arithmetic")
    texts = [c["text"] for c in ensemble["candidates"]]
    assert texts == [c["text"] for c in prm["candidates"]]  # seeded: same samples
    for mixed, p, a in zip(ensemble["candidates"], prm["candidates"], arithmetic["candidates"]):
        # aggregation "mean" is linear, so the mean of the mix is the mix of the means.
        assert mixed["score"] == pytest.approx(0.5 * p["score"] + 0.5 * a["score"], abs=1e-9)
    assert ensemble["usage"]["reward_calls"] == 1


def test_unknown_reward_lists_the_configured_ones(http: httpx.Client) -> None:
    response = http.post("/v1/solve", json={**REQUEST, "reward": "oracle"})
    assert response.status_code == 400
    assert "configured: ensemble, arithmetic, prm" in response.json()["error"]["message"]
