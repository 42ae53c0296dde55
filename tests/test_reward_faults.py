"""Reward backends over the app: a remote PRM that is down or hangs (503 naming it,
or the request's fallback), /health with a dead PRM, and the ensemble.

The PRM client and its HTTP transport are the real ones, against a dead port and a
socket that accepts and never answers; the policy is scripted (the HTTP tests with a
real engine are in test_prm_http.py), so no engine starts here.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.settings import Settings
from tests.fakes import ScriptedPolicy
from tests.servers import free_port

ANSWERS = [
    "3 * 4 = 12\n\nThe answer is 12.",
    "3 + 4 = 7\n\nThe answer is 7.",
    "4 * 3 = 12\n\nThe answer is 12.",
]


class ScriptedBackend(ScriptedPolicy):
    """The scripted policy with the server-side extras a backend needs."""

    async def check_health(self) -> None:
        return None

    def running_requests(self) -> int:
        return 0

    async def close(self) -> None:
        return None


@pytest.fixture()
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a hung PRM server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def client_for(prm_url: str, **settings) -> TestClient:
    async def policy(_: Settings) -> ScriptedBackend:
        return ScriptedBackend(ANSWERS)

    config = Settings(prm_url=prm_url, prm_kind="qwen", **{"prm_timeout_s": 1.0, **settings})
    return TestClient(create_app(config, policy_factory=policy))


def solve(client: TestClient, **body):
    return client.post(
        "/v1/solve",
        json={"question": "3 bags of 4?", "n": 3, "selection": "weighted", "reward": "prm", **body},
    )


def test_dead_prm_is_a_503_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with client_for(url) as client:
        response = solve(client)
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "reward_unavailable" and error["type"] == "service_unavailable"
    assert f"reward backend 'prm' (remote PRM at {url}) unreachable" in error["message"]


def test_hung_prm_times_out_into_a_503(silent_server: str) -> None:
    with client_for(silent_server) as client:
        started = time.monotonic()
        response = solve(client)
    assert time.monotonic() - started < 10
    assert response.status_code == 503
    assert "no answer from /v1/models within 1 s" in response.json()["error"]["message"]


def test_fallback_none_continues_without_reward_and_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with client_for(url, reward="arithmetic") as client:
        body = solve(client, reward_fallback="none").json()
        healthy = solve(client, reward="arithmetic", reward_fallback="none").json()
    assert body["reward"] == "prm"
    assert "unreachable" in body["reward_error"] and "without reward" in body["reward_error"]
    assert [c["score"] for c in body["candidates"]] == [0.5, 0.5, 0.5]
    assert body["answer"] == "12"  # unguided weighted best-of-N: the two 12s outvote the 7
    assert body["usage"]["reward_calls"] == 1
    assert healthy["reward_error"] is None and healthy["reward"] == "arithmetic"


def test_bad_fallback_value_is_a_400() -> None:
    with client_for(f"http://127.0.0.1:{free_port()}") as client:
        response = solve(client, reward_fallback="maybe")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "reward_fallback"


def test_chat_choices_say_when_the_reward_failed() -> None:
    """The chat endpoint reports a reward fallback per choice, streamed or not."""
    url = f"http://127.0.0.1:{free_port()}"
    body = {
        "model": "scripted@best_of_n",
        "messages": [{"role": "user", "content": "3 bags of 4?"}],
        "search": {"n": 3, "selection": "weighted", "reward": "prm", "reward_fallback": "none"},
    }
    with client_for(url) as client:
        reply = client.post("/v1/chat/completions", json=body).json()
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as stream:
            events = [
                json.loads(line[len("data: ") :])
                for line in stream.iter_lines()
                if line.startswith("data: {")
            ]
        refused = client.post(
            "/v1/chat/completions",
            json={**body, "search": {**body["search"], "reward_fallback": "error"}},
        )
    search = reply["choices"][0]["search"]
    assert "unreachable" in search["reward_error"] and search["answer"] == "12"
    finish = [e["choices"][0] for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and "unreachable" in finish[0]["search"]["reward_error"]
    assert refused.status_code == 503


def test_health_reports_a_dead_prm_as_degraded_not_down() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with client_for(url, reward="arithmetic") as client:
        health = client.get("/health")
        works = solve(client, reward="arithmetic")
    assert health.status_code == 200  # the policy and the other rewards still serve
    body = health.json()
    assert body["status"] == "degraded"
    assert body["rewards"]["prm"].startswith("unavailable: ") and url in body["rewards"]["prm"]
    assert works.status_code == 200


def test_health_does_not_wait_out_a_hung_prms_call_timeout(silent_server: str) -> None:
    with client_for(silent_server, prm_timeout_s=60.0) as client:
        started = time.monotonic()
        body = client.get("/health").json()
    assert time.monotonic() - started < 15
    assert body["status"] == "degraded"
    assert body["rewards"]["prm"] == "unavailable: no answer within 5 s"


def test_ensemble_over_http_is_the_weighted_mean_of_its_members() -> None:
    """`--reward arithmetic:0.5,self-judge:0.5` through the app: the default reward is
    the ensemble, and each candidate's score is the mean of what the members give
    (the scripted policy never answers yes or no, so its self-judge scores 0.5)."""

    async def policy(_: Settings) -> ScriptedBackend:
        return ScriptedBackend(
            ["3 * 4 = 12\n\nThe answer is 12.", "3 * 4 = 13\n\nThe answer is 13."]
        )

    config = Settings(reward="arithmetic:0.5,self-judge:0.5")
    request = {"question": "3 bags of 4?", "n": 3, "selection": "max_reward", "aggregation": "mean"}
    with TestClient(create_app(config, policy_factory=policy)) as client:
        ensemble = client.post("/v1/solve", json=request).json()
        members = {
            name: client.post("/v1/solve", json={**request, "reward": name}).json()
            for name in ("arithmetic", "self-judge")
        }
    assert ensemble["reward"] == "ensemble"
    arithmetic = [c["score"] for c in members["arithmetic"]["candidates"]]
    judge = [c["score"] for c in members["self-judge"]["candidates"]]
    # Steps: a claim (true 1, false 0), then "The answer is" (no claim: 0.5); mean.
    assert judge == [0.5, 0.5, 0.5] and arithmetic == [0.75, 0.25, 0.75]
    assert [c["score"] for c in ensemble["candidates"]] == pytest.approx([0.625, 0.375, 0.625])
    assert ensemble["answer"] == "12"
