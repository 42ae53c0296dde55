"""`ponder fleet` for real: two `vllm serve` replicas of the embedded model, vLLM's router
(`vllm-router`, consistent_hash) and Ponder, all on loopback, started by the one
command a user runs. A search's engine calls all land on one replica (read from the
replicas' own metrics); a replica killed outright leaves searches answered by the
other; stopping the fleet leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import REPO, wait_for

pytestmark = pytest.mark.engine

BEAM = {
    "strategy": "beam_search",
    "n": 4,
    "beam_width": 2,
    "max_step_tokens": 24,
    "max_new_tokens": 96,
    "seed": 3,
    "budget": {"max_tokens": 192},
}


@dataclass
class RunningFleet:
    process: subprocess.Popen[bytes]
    ponder: str
    replicas: dict[str, str]  # name -> url
    pids: dict[str, int]
    log_dir: Path


def _requests_served(replica_url: str) -> float:
    """The replica's finished requests, whatever their finish reason (its /metrics)."""
    text = httpx.get(replica_url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{")
    )


def _group_alive(pid: int) -> list[psutil.Process]:
    """Processes still running in the process group `pid` led (its engine children
    too); zombies are dead, waiting for init to reap them."""
    alive = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == pid and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[RunningFleet]:
    log_dir = tmp_path_factory.mktemp("fleet")
    command = [
        sys.executable, "-m", "server.cli", "fleet", "--replicas", "2",
        "--enforce-eager", "--dtype", "float32", "--max-model-len", "2048",
        # Small KV reservations: the suite's shared servers are up beside the fleet.
        "--gpu-memory-utilization", "0.1",
        "--port", "0", "--router-port", "0", "--replica-port", "0",  # free ports
        "--log-dir", str(log_dir), "--startup-timeout-s", "600",
        "--", "--reward", "arithmetic",
    ]  # fmt: skip
    out = (log_dir / "fleet.out").open("wb")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    state = log_dir / "fleet.json"
    up = wait_for(lambda: state.exists() or process.poll() is not None, within_s=900)
    if not up or process.poll() is not None:
        process.kill()
        tail = (log_dir / "fleet.out").read_text(errors="replace")[-3000:]
        pytest.fail(f"ponder fleet did not come up:\n{tail}")
    parts = json.loads(state.read_text())
    running = RunningFleet(
        process,
        parts["ponder"]["url"],
        {name: p["url"] for name, p in parts.items() if name.startswith("replica")},
        {name: int(p["pid"]) for name, p in parts.items()},
        log_dir,
    )
    yield running
    process.send_signal(signal.SIGTERM)
    process.wait(120)
    out.close()
    leftovers = [p for pid in running.pids.values() for p in _group_alive(pid)]
    assert not leftovers, f"the fleet left processes behind: {leftovers}"


def test_one_search_stays_on_one_replica(fleet: RunningFleet) -> None:
    health = httpx.get(fleet.ponder + "/health", timeout=30).json()
    assert health["status"] == "ok"
    assert health["detail"] == "router: 2/2 policy replicas healthy"
    before = {name: _requests_served(url) for name, url in fleet.replicas.items()}
    body = {**BEAM, "question": "Tom has 3 apples and buys 4 more. How many apples now?"}
    response = httpx.post(fleet.ponder + "/v1/solve", json=body, timeout=600)
    assert response.status_code == 200, response.text
    calls = response.json()["usage"]["engine_calls"]
    assert calls >= 2  # a beam search: several waves, every one an engine call
    served = {name: _requests_served(url) - before[name] for name, url in fleet.replicas.items()}
    assert sorted(served.values())[0] == 0, f"the search was split over replicas: {served}"
    assert max(served.values()) >= calls


def test_a_killed_replica_leaves_searches_answered(fleet: RunningFleet) -> None:
    victim = "replica-0"
    os.killpg(fleet.pids[victim], signal.SIGKILL)
    assert wait_for(lambda: not _group_alive(fleet.pids[victim]), within_s=30)
    # Several searches with different ids: some hash to the dead replica, and the
    # router's circuit breaker plus Ponder's one retry must carry them to the other.
    for seed in range(4):
        body = {**BEAM, "seed": 10 + seed, "question": f"What is {seed + 2} + {seed + 5}?"}
        started = time.monotonic()
        response = httpx.post(fleet.ponder + "/v1/solve", json=body, timeout=600)
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 300
    survivor = fleet.replicas["replica-1"]
    assert _requests_served(survivor) > 0

    def router_saw_it() -> bool:
        health = httpx.get(fleet.ponder + "/health", timeout=30)
        detail = health.json().get("detail") or ""
        # Still serving: 200, with the router's view of the dead replica.
        return health.status_code == 200 and detail.startswith(
            "router: 1/2 policy replicas healthy; down:"
        )

    assert wait_for(router_saw_it, within_s=60)
