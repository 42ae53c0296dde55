"""The fleet's logic without engines: the remote policy's session header, its one retry,
its view of a router's replicas (on scripted HTTP answers), and the launcher's plan.
The fleet itself, with real replicas and vLLM's router, is tests/test_fleet.py."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from search_strategies.protocols import SamplingConfig
from server.fleet import FleetPlan, parse_args, split_cores
from server.policy.errors import PolicyUnavailable
from server.policy.remote import RemotePolicy
from server.policy.session import current_search_id, search_session

COMPLETION = {
    "choices": [{"index": 0, "text": "4", "token_ids": [19], "finish_reason": "stop"}],
    "usage": {},
}
Handler = Callable[[httpx.Request], httpx.Response]


def _policy(handler: Handler, header: str | None = "X-Session-ID") -> RemotePolicy:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RemotePolicy(client, "http://router/v1", "m", session_header=header)


def _generate(policy: RemotePolicy) -> list:
    params = SamplingConfig(n=1, max_tokens=4, temperature=0.8, top_p=1.0)
    return asyncio.run(policy.generate([[1, 2]], params))


def test_each_search_sends_its_own_id_and_nothing_outside_a_search() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-session-id"))
        return httpx.Response(200, json=COMPLETION)

    policy = _policy(handler)

    async def two_searches() -> list[str]:
        ids = []
        params = SamplingConfig(n=1, max_tokens=4, temperature=0.8, top_p=1.0)
        for _ in range(2):
            with search_session() as search_id:
                ids.append(search_id)
                # Calls from tasks the search spawns carry the same id.
                await asyncio.gather(*(policy.generate([[1]], params) for _ in range(2)))
        return ids

    ids = asyncio.run(two_searches())
    assert seen == [ids[0], ids[0], ids[1], ids[1]] and ids[0] != ids[1]
    assert current_search_id() is None
    _generate(policy)
    assert seen[-1] is None
    quiet = _policy(handler, header=None)
    with search_session():
        _generate(quiet)
    assert seen[-1] is None


@pytest.mark.parametrize(
    "first",
    [httpx.ConnectError("refused"), httpx.RemoteProtocolError("closed"), 500, 502, 503, 504],
)
def test_a_broken_call_is_sent_once_more(first: object) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            if isinstance(first, Exception):
                raise first
            return httpx.Response(int(str(first)), text="replica gone")
        return httpx.Response(200, json=COMPLETION)

    policy = _policy(handler)
    assert _generate(policy)[0].completions[0].text == "4"
    assert len(calls) == 2 and policy.retries == 1
    assert calls[0].content == calls[1].content  # the same (seeded) request again


def test_a_second_failure_or_a_timeout_is_a_clear_unavailable() -> None:
    def always_refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(PolicyUnavailable, match="tried twice.*connection refused"):
        _generate(_policy(always_refused))

    calls = []

    def slow(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out")

    with pytest.raises(PolicyUnavailable, match="timed out"):
        _generate(_policy(slow))
    assert len(calls) == 1  # a timeout is not retried: the remote was working on it

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="no replica")

    with pytest.raises(PolicyUnavailable, match="502"):
        _generate(_policy(gateway))


def _health(workers: object, status: int = 200, health: int = 503) -> Handler:
    """A router: /workers as given; /health fails (vLLM's router fails it as soon as
    one replica is down) unless told otherwise."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(health, text="Unhealthy servers: [...]")
        return httpx.Response(status, json={"workers": workers})

    return handler


def test_health_reports_the_router_view_of_its_replicas() -> None:
    up = {"url": "http://a", "is_healthy": True}
    down = {"url": "http://b", "is_healthy": False}
    note = asyncio.run(_policy(_health([up, down])).check_health())
    assert note == "router: 1/2 policy replicas healthy; down: http://b"
    assert asyncio.run(_policy(_health([up, up])).check_health()) == (
        "router: 2/2 policy replicas healthy"
    )
    with pytest.raises(PolicyUnavailable, match="no healthy policy replica"):
        asyncio.run(_policy(_health([down])).check_health())
    # A plain vllm serve has no /workers: its /health decides, with nothing to add.
    assert asyncio.run(_policy(_health(None, status=404, health=200)).check_health()) is None
    with pytest.raises(PolicyUnavailable, match="503"):
        asyncio.run(_policy(_health(None, status=404)).check_health())
    assert asyncio.run(_policy(_health("garbage", health=200)).check_health()) is None


def test_cores_are_split_so_replicas_do_not_share_one() -> None:
    assert split_cores([0, 1], 2) == ("0", "1")
    assert split_cores([0, 1, 2, 3, 4], 2) == ("0,1,2", "3,4")
    assert split_cores([0, 1], 1) == ("0,1",)
    assert split_cores([0], 2) == ()


def test_the_plan_wires_replicas_router_and_ponder() -> None:
    args, serve = parse_args(["--replicas", "3", "--router-port", "9000", "--", "--reward", "x"])
    assert args.replicas == 3 and serve == ["--reward", "x"]
    plan = FleetPlan(
        model="/m",
        served_model_name="smol",
        router_port=9000,
        replica_ports=(9001, 9002, 9003),
        serve_args=tuple(serve),
        replica_cores=("0", "1", "2"),
        log_dir=Path("logs"),
    )
    router = plan.router_command("vllm-router")
    workers = router[router.index("--worker-urls") + 1 : router.index("--policy")]
    assert workers == ["http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"]
    assert router[router.index("--policy") + 1] == "consistent_hash"
    ponder = plan.ponder_command()
    assert ponder[:4] == [sys.executable, "-m", "server.cli", "serve"]
    assert "http://127.0.0.1:9000/v1" in ponder and ponder[-2:] == ["--reward", "x"]
    assert "--port" in plan.replica_command(2) and "9003" in plan.replica_command(2)
    assert plan.replica_env(1)["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    with pytest.raises(SystemExit):
        parse_args(["--replicas", "0"])
