"""The fleet's routing, measured: prefix-cache share, throughput and latency of concurrent
searches through vLLM's router under each routing mode, against one replica; then a
replica killed during a load.

    python benchmarks/bench_fleet.py --searches 16 --budget 256 [--json out.json]

It starts two replicas (`server.fleet`, the same parts `ponder fleet` starts, each on
half the cores) and, per mode, a router and a Ponder in front of them; then one
replica on all the cores for the last two modes:

- `session`: the router's consistent_hash policy on Ponder's `X-Session-ID` header
  (what `ponder fleet` runs);
- `cache_aware`: the router's own prefix-tree policy, no header;
- `round_robin`: every call to the next replica;
- `one replica`: one replica with all the cores, Ponder straight to it;
- `one replica + router`: the same replica behind the router (the hop's cost).

Each mode gets its own problems (the arithmetic generator, a seed per mode), so one
mode's cached prefixes cannot serve another's. The prefix-cache share is read from
the replicas' own counters (`vllm:prefix_cache_hits_total / queries_total`, in
tokens): what the engines reused, not what Ponder believes. For `failover`, a load of
concurrent searches runs for `--failover-s` seconds and replica 1 is killed (SIGKILL,
its whole process group) a third of the way in; every request is then counted as
answered, failed with a clear error (an HTTP error status), or lost (no answer in
`--timeout-s`: hung).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from clients.bench.datasets import Subset, load_dataset
from server.fleet import Fleet, FleetPlan, plan_from

#: Each strategy's own knobs (the published sweep's), the budget added per run.
LOADS: dict[str, dict[str, Any]] = {
    "beam_search": {"n": 8, "beam_width": 2, "max_step_tokens": 48},
    "mcts": {"simulations": 64, "expansion_width": 2, "wave_size": 4, "max_step_tokens": 48},
}
#: Two replicas behind the router (three policies), then one replica with every core,
#: straight and behind the router (the router hop's own cost).
MODES = ("session", "cache_aware", "round_robin", "one replica", "one replica + router")


@dataclass
class LoadResult:
    mode: str
    strategy: str
    searches: int
    wall_s: float
    generated_tokens: int
    latencies_s: list[float]
    cache_hits: float
    cache_queries: float

    @property
    def cache_share(self) -> float:
        return self.cache_hits / self.cache_queries if self.cache_queries else 0.0

    def row(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_s)
        return {
            "mode": self.mode,
            "strategy": self.strategy,
            "prefix_cache_share": round(self.cache_share, 3),
            "tokens_per_s": round(self.generated_tokens / self.wall_s, 1),
            "p50_s": round(statistics.median(ordered), 2),
            "p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
            "wall_s": round(self.wall_s, 1),
        }


def cache_counters(urls: list[str]) -> tuple[float, float]:
    """Summed prefix-cache hits and queries (tokens) of the replicas at `urls`."""
    hits = queries = 0.0
    for url in urls:
        for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
            if line.startswith("vllm:prefix_cache_hits_total{"):
                hits += float(line.rsplit(" ", 1)[1])
            elif line.startswith("vllm:prefix_cache_queries_total{"):
                queries += float(line.rsplit(" ", 1)[1])
    return hits, queries


async def run_load(
    ponder: str, bodies: list[dict[str, Any]], timeout_s: float
) -> tuple[float, int, list[float]]:
    """All `bodies` at once; (wall seconds, generated tokens, each latency)."""
    async with httpx.AsyncClient(base_url=ponder, timeout=timeout_s) as client:

        async def one(body: dict[str, Any]) -> tuple[float, int]:
            started = time.perf_counter()
            response = await client.post("/v1/solve", json=body)
            if response.status_code != 200:
                sys.exit(f"{body['strategy']}: HTTP {response.status_code}: {response.text}")
            return time.perf_counter() - started, response.json()["usage"]["generated_tokens"]

        started = time.perf_counter()
        done = await asyncio.gather(*(one(b) for b in bodies))
        return time.perf_counter() - started, sum(t for _, t in done), [s for s, _ in done]


def bodies_for(strategy: str, seed: int, count: int, budget: int) -> list[dict[str, Any]]:
    problems = load_dataset("arithmetic", Subset(levels=(1,), limit=count, seed=seed))
    return [
        {"question": p.question, "strategy": strategy, **LOADS[strategy], "seed": i,
         "max_new_tokens": 256, "budget": {"max_tokens": budget}}
        for i, p in enumerate(problems)
    ]  # fmt: skip


def measure_mode(fleet: Fleet, mode: str, seed: int, args: argparse.Namespace) -> list[LoadResult]:
    """Start the mode's router (if any) and Ponder on `fleet`'s replicas, run each load,
    stop them again (the replicas stay)."""
    urls = fleet.plan.replica_urls
    parts = []
    if mode == "one replica":
        parts.append(fleet.start_ponder(policy_url=urls[0] + "/v1"))
    else:
        policy = "cache_aware" if mode == "cache_aware" else "round_robin"
        if mode in ("session", "one replica + router"):
            policy = "consistent_hash"
        parts.append(fleet.start_router(policy))
        header = [] if policy == "consistent_hash" else ["--policy-session-header", ""]
        parts.append(fleet.start_ponder(extra=header))
    results = []
    try:
        for offset, strategy in enumerate(LOADS):
            bodies = bodies_for(strategy, seed * 10 + offset, args.searches, args.budget)
            hits, queries = cache_counters(urls)
            wall, tokens, latencies = asyncio.run(run_load(parts[-1].url, bodies, args.timeout_s))
            hits2, queries2 = cache_counters(urls)
            cached, queried = hits2 - hits, queries2 - queries
            result = LoadResult(
                mode, strategy, len(bodies), wall, tokens, latencies, cached, queried
            )
            print(json.dumps(result.row()), flush=True)
            results.append(result)
    finally:
        for part in reversed(parts):
            fleet.stop_part(part)
    return results


async def failover_load(
    ponder: str, kill: Any, seconds: float, concurrency: int, budget: int, timeout_s: float
) -> dict[str, int]:
    """`concurrency` workers send beam searches for `seconds`; `kill()` runs at a third."""
    counts = {"answered": 0, "failed": 0, "lost": 0}
    statuses: dict[str, int] = {}
    problems = load_dataset("arithmetic", Subset(levels=(1,), limit=400, seed=99))
    deadline = time.monotonic() + seconds
    sent = iter(range(10**6))

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            i = next(sent)
            question = problems[i % len(problems)].question
            body = {"question": question, "strategy": "beam_search", **LOADS["beam_search"],
                    "seed": i, "budget": {"max_tokens": budget}}  # fmt: skip
            try:
                response = await client.post("/v1/solve", json=body)
            except httpx.TimeoutException:
                counts["lost"] += 1
                continue
            key = "answered" if response.status_code == 200 else "failed"
            counts[key] += 1
            if key == "failed":
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    async def killer() -> None:
        await asyncio.sleep(seconds / 3)
        kill()

    async with httpx.AsyncClient(base_url=ponder, timeout=timeout_s) as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(concurrency)))
    return {**counts, **{f"status {k}": v for k, v in statuses.items()}}


def retries(ponder: str) -> int:
    for line in httpx.get(ponder + "/metrics", timeout=10).text.splitlines():
        if line.startswith("ponder_policy_call_retries "):
            return int(float(line.split()[1]))
    return 0


def fleet_of(replicas: int, port: int) -> Fleet:
    """Replicas of the embedded model as `ponder fleet` would start them (cores split)."""
    fleet_args = argparse.Namespace(
        policy=None, served_model_name=None, replicas=replicas, host="127.0.0.1", port=port,
        router_port=0, replica_port=0, router_policy="consistent_hash",
        dtype="auto", block_size=None, max_model_len=4096, gpu_memory_utilization=0.2,
        enforce_eager=True, log_dir=Path(tempfile.mkdtemp(prefix="bench-fleet-")),
    )  # fmt: skip
    plan: FleetPlan = plan_from(fleet_args, ["--reward", "arithmetic"])
    print(f"{replicas} replicas on cores {plan.replica_cores or 'vLLM default'}; {plan.log_dir}")
    return Fleet(plan)


def failover(fleet: Fleet, args: argparse.Namespace) -> dict[str, int]:
    fleet.start_router()
    ponder = fleet.start_ponder()
    victim = next(p for p in fleet.parts if p.name == "replica-1")
    counts = asyncio.run(
        failover_load(
            ponder.url,
            lambda: os.killpg(victim.process.pid, signal.SIGKILL),
            args.failover_s,
            concurrency=8,
            budget=args.budget,
            timeout_s=args.timeout_s,
        )
    )
    counts["retried"] = retries(ponder.url)
    print(json.dumps({"failover": counts}), flush=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=16, help="concurrent searches per load")
    parser.add_argument("--budget", type=int, default=256, help="budget.max_tokens per search")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--failover-s", type=float, default=60.0, help="0: skip failover")
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    modes = args.modes.split(",")
    report: dict[str, Any] = {"searches": args.searches, "budget": args.budget, "loads": []}
    for replicas in (2, 1):
        mine = [m for m in modes if m.startswith("one replica") == (replicas == 1)]
        if not mine and not (replicas == 2 and args.failover_s):
            continue
        fleet = fleet_of(replicas, args.port)
        try:
            fleet.start_replicas()
            for mode in mine:
                seed = MODES.index(mode) + 1
                report["loads"] += [r.row() for r in measure_mode(fleet, mode, seed, args)]
            if replicas == 2 and args.failover_s:
                report["failover"] = failover(fleet, args)
        finally:
            fleet.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
