"""What each search strategy costs per generated token, against best-of-N.

Every registered strategy at the same token budget, one request at a time, on the
same problems, through a live server's `POST /v1/solve`. Per strategy it prints the
wall time per generated token relative to best-of-N (the median over problems of the
per-problem ratio, so a slow problem weighs no more than a fast one), the share of
prompt tokens served from vLLM's prefix cache, engine calls per request and samples
per engine call (how full each call's batch was: what decides tokens per second on a
CPU or a GPU).

    ponder serve --enforce-eager --block-size 32 --reward arithmetic --port 8123 &
    python benchmarks/bench_strategies.py --server http://127.0.0.1:8123 \
        --problems 6 --budget 512 [--top-p 1.0] [--json out.json] \
        [--variant "mcts/skip repeat_selection=skip" ...]

A `--variant` adds a row: LABEL (STRATEGY/NAME) then key=value overrides of that
strategy's settings (values parsed as JSON where they parse, else strings), run
beside the defaults on the same problems and seeds.

Strategies alternate within each problem (best-of-N first), so machine noise hits
all alike. The sizes are the published sweep's (clients/bench/grids/
published_arithmetic.toml): each strategy's own size knob is large enough that the
budget is what stops it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from clients.bench.datasets import Subset, load_dataset
from search_strategies.registry import STRATEGIES

#: Each strategy's own knobs (the published sweep's); the budget is added per run.
SETTINGS: dict[str, dict[str, Any]] = {
    "best_of_n": {"n": 8, "selection": "weighted"},
    "beam_search": {"n": 8, "beam_width": 2, "max_step_tokens": 48},
    "dvts": {"n": 8, "beam_width": 2, "max_step_tokens": 48},
    "mcts": {"simulations": 64, "expansion_width": 2, "wave_size": 4, "max_step_tokens": 48},
    "revision": {"parallel_chains": 2, "max_revisions": 8},
    "particle_filtering": {"n": 8, "max_step_tokens": 48},
    "auto": {},  # the server's table decides
}
BASELINE = "best_of_n"


@dataclass
class Totals:
    """One strategy's measurements over the problems."""

    seconds_per_token: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    generated_tokens: int = 0
    engine_calls: int = 0
    samples: int = 0
    requests: int = 0

    def add(self, seconds: float, usage: dict[str, int]) -> None:
        self.seconds_per_token.append(seconds / max(1, usage["generated_tokens"]))
        self.prompt_tokens += usage["prompt_tokens"]
        self.cached_prompt_tokens += usage["cached_prompt_tokens"]
        self.generated_tokens += usage["generated_tokens"]
        self.engine_calls += usage["engine_calls"]
        self.samples += usage["samples"]
        self.requests += 1


def solve(client: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    response = client.post("/v1/solve", json=body)
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        sys.exit(f"{body['strategy']}: HTTP {response.status_code}: {response.text}")
    return seconds, response.json()["usage"]


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """`"mcts/skip repeat_selection=skip"` -> ("mcts/skip", mcts's settings overridden)."""
    label, *pairs = spec.split()
    strategy = label.split("/", 1)[0]
    if strategy not in SETTINGS:
        sys.exit(f"--variant {spec!r}: unknown strategy {strategy!r}")
    settings = {**SETTINGS[strategy], "strategy": strategy}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--variant {spec!r}: {pair!r} is not key=value")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return label, settings


def measure(args: argparse.Namespace) -> dict[str, Totals]:
    problems = load_dataset("arithmetic", Subset(limit=args.problems, levels=(1,)))
    names = [BASELINE] + [name for name in STRATEGIES if name != BASELINE]
    missing = [name for name in names if name not in SETTINGS]
    if missing:
        sys.exit(f"no settings for {missing}: add them to SETTINGS")
    rows = {name: {**SETTINGS[name], "strategy": name} for name in names}
    rows.update(parse_variant(spec) for spec in args.variant)
    names = list(rows)
    totals = {name: Totals() for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    with httpx.Client(base_url=args.server, timeout=args.timeout) as client:
        for index, problem in enumerate(problems):
            per_token = {}
            for name in names:
                body = {
                    "question": problem.question,
                    "seed": args.seed + index,
                    "top_p": args.top_p,
                    "max_new_tokens": args.budget,
                    "budget": {"max_tokens": args.budget},
                    **rows[name],
                }
                seconds, usage = solve(client, body)
                totals[name].add(seconds, usage)
                per_token[name] = seconds / max(1, usage["generated_tokens"])
                print(
                    f"problem {index + 1}/{len(problems)} {name}: {seconds:.1f} s, "
                    f"{usage['generated_tokens']} tokens",
                    file=sys.stderr,
                )
            for name in names:
                ratios[name].append(per_token[name] / per_token[BASELINE])
    for name in names:
        totals[name].seconds_per_token = ratios[name]
    return totals


def table(totals: dict[str, Totals], args: argparse.Namespace) -> str:
    lines = [
        f"{len(next(iter(totals.values())).seconds_per_token)} arithmetic problems, "
        f"budget {args.budget} tokens, top_p {args.top_p}, one request at a time",
        "",
        "| strategy | wall per token vs best-of-N (median) | prefix-cache share "
        "| engine calls per request | samples per call | tokens per request |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in totals.items():
        lines.append(
            f"| {name} | {statistics.median(t.seconds_per_token):.2f}x "
            f"| {t.cached_prompt_tokens / max(1, t.prompt_tokens):.2f} "
            f"| {t.engine_calls / t.requests:.1f} | {t.samples / max(1, t.engine_calls):.1f} "
            f"| {t.generated_tokens / t.requests:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--problems", type=int, default=6)
    parser.add_argument("--budget", type=int, default=512, help="generated tokens per request")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=1, help="request seed of the first problem")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help='another row: "LABEL key=value ...", LABEL = STRATEGY or STRATEGY/NAME',
    )
    args = parser.parse_args()
    totals = measure(args)
    print(table(totals, args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({name: vars(t) for name, t in totals.items()}, out, indent=1)


if __name__ == "__main__":
    main()
