"""Load test: N concurrent chat clients for T seconds, mixing every served strategy.

    python clients/load_test.py --url http://127.0.0.1:8000 --clients 32 --duration 60

Each client loops: pick the next model id from `/v1/models` (plain sampling and every
`<model>@<strategy>`), send `/v1/chat/completions` (every third request streamed with
usage), record latency, status and completion tokens. No new request starts after
`--duration`; requests in flight then have `--timeout` to finish. A request is
"lost" if it got neither an answer nor a clear HTTP error (timeouts, dropped
connections, a stream without [DONE]).

With `--baseline` it first measures single-batch throughput: one best-of-N request
whose `n` samples are one engine batch, tokens/s = generated tokens / wall time. The
report's `ratio` is load tokens/s over that; continuous batching across requests is
working when it stays near 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

MAX_CLIENTS = 256
MAX_DURATION_S = 600.0


@dataclass
class Outcome:
    model: str
    status: int | None  # None: lost (no answer, no HTTP error)
    latency_s: float
    completion_tokens: int = 0
    streamed: bool = False
    error: str | None = None


@dataclass
class Report:
    clients: int
    duration_s: float
    wall_s: float
    requests: int
    ok: int
    status_counts: dict[str, int]
    lost: int
    server_errors: int
    p50_s: float | None
    p99_s: float | None
    completion_tokens: int
    tokens_per_s: float
    per_model: dict[str, int] = field(default_factory=dict)
    baseline_tokens_per_s: float | None = None
    ratio: float | None = None


QUESTIONS = [
    "Sam has {a} bags with {b} marbles in each bag. How many marbles does Sam have?",
    "What is {a} + {b}?",
    "A box holds {a} pens. How many pens are in {b} boxes?",
]


def chat_body(model: str, turn: int, args: argparse.Namespace, stream: bool) -> dict[str, Any]:
    question = QUESTIONS[turn % len(QUESTIONS)].format(a=3 + turn % 7, b=4 + turn % 5)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": args.max_tokens,
        "search": {"budget": {"max_tokens": args.search_tokens}},
    }
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


async def one_request(client: httpx.AsyncClient, body: dict[str, Any]) -> Outcome:
    started = time.monotonic()
    model, streamed = body["model"], bool(body.get("stream"))
    try:
        if not streamed:
            response = await client.post("/v1/chat/completions", json=body)
            tokens = 0
            if response.status_code == 200:
                tokens = response.json()["usage"]["completion_tokens"]
            return Outcome(model, response.status_code, time.monotonic() - started, tokens)
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return Outcome(
                    model, response.status_code, time.monotonic() - started, streamed=True
                )
            tokens, done = 0, False
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    usage = json.loads(line[6:]).get("usage")
                    tokens = usage["completion_tokens"] if usage else tokens
            status = 200 if done else None
            return Outcome(
                model,
                status,
                time.monotonic() - started,
                tokens,
                True,
                None if done else "stream ended without [DONE]",
            )
    except httpx.HTTPError as error:
        return Outcome(
            model,
            None,
            time.monotonic() - started,
            streamed=streamed,
            error=f"{type(error).__name__}: {error}",
        )


async def client_loop(
    index: int,
    client: httpx.AsyncClient,
    models: list[str],
    stop_at: float,
    args: argparse.Namespace,
    outcomes: list[Outcome],
) -> None:
    turn = index
    while time.monotonic() < stop_at:
        model = models[turn % len(models)]
        outcome = await one_request(client, chat_body(model, turn, args, turn % 3 == 0))
        outcomes.append(outcome)
        if outcome.status == 429:  # honour the server's back-pressure
            await asyncio.sleep(1.0)
        turn += args.clients


async def baseline(client: httpx.AsyncClient, args: argparse.Namespace) -> float:
    """Generated tokens/s of ONE request whose samples form one engine batch."""
    body = {
        "question": "Sam has 3 bags with 4 marbles in each bag. How many marbles?",
        "strategy": "best_of_n",
        "n": args.baseline_n,
        "max_new_tokens": args.max_tokens,
        "seed": 1,
    }
    await client.post("/v1/solve", json={**body, "n": 1})  # warm-up
    started = time.monotonic()
    response = await client.post("/v1/solve", json=body)
    response.raise_for_status()
    return response.json()["usage"]["generated_tokens"] / (time.monotonic() - started)


async def run(args: argparse.Namespace) -> Report:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, timeout=args.timeout, limits=limits
    ) as client:
        models = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        base_tps = await baseline(client, args) if args.baseline else None
        outcomes: list[Outcome] = []
        started = time.monotonic()
        stop_at = started + args.duration
        await asyncio.gather(
            *(client_loop(i, client, models, stop_at, args, outcomes) for i in range(args.clients))
        )
        wall = time.monotonic() - started
    return summarize(outcomes, args, wall, base_tps)


def summarize(
    outcomes: list[Outcome], args: argparse.Namespace, wall: float, base_tps: float | None
) -> Report:
    ok = [o for o in outcomes if o.status == 200]
    latencies = sorted(o.latency_s for o in ok)
    counts: dict[str, int] = {}
    per_model: dict[str, int] = {}
    for outcome in outcomes:
        key = str(outcome.status) if outcome.status is not None else "lost"
        counts[key] = counts.get(key, 0) + 1
        per_model[outcome.model] = per_model.get(outcome.model, 0) + 1
    tokens = sum(o.completion_tokens for o in ok)
    tps = tokens / wall if wall else 0.0
    return Report(
        clients=args.clients,
        duration_s=args.duration,
        wall_s=round(wall, 2),
        requests=len(outcomes),
        ok=len(ok),
        status_counts=counts,
        lost=counts.get("lost", 0),
        server_errors=sum(1 for o in outcomes if o.status is not None and o.status >= 500),
        p50_s=round(statistics.median(latencies), 3) if latencies else None,
        p99_s=round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 3)
        if latencies
        else None,
        completion_tokens=tokens,
        tokens_per_s=round(tps, 2),
        per_model=per_model,
        baseline_tokens_per_s=round(base_tps, 2) if base_tps else None,
        ratio=round(tps / base_tps, 3) if base_tps else None,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of new requests")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens per sample")
    parser.add_argument(
        "--search-tokens",
        type=int,
        default=256,
        help="search budget (generated tokens) per request",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    parser.add_argument(
        "--baseline", action="store_true", help="measure single-batch throughput first"
    )
    parser.add_argument("--baseline-n", type=int, default=32)
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S}]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(run(args))
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 1 if report.server_errors or report.lost else 0


if __name__ == "__main__":
    sys.exit(main())
