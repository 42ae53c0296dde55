"""`ponder learn label`: Monte-Carlo step labels for a collect folder, over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

from clients.bench.cli import add_client_arguments, sweep_options
from clients.bench.client import RequestRejected
from clients.bench.grid import parse_params
from learning.mc_labels import MC_LABELS_NAME, LabelRequest, label_folder
from learning.sources import load_folder

_EPILOG = f"""\
For every sample's step i but the last, K rollouts continue the solution from its
first i steps (one best-of-K request with answer_prefix and a majority vote, so the
server returns every continuation); each completed solution is graded against the
gold answer. A step is right if any rollout is (`export --labels mc`, Math-Shepherd's
hard estimate) or if at least half are (`--labels mc-soft`); the last step gets the
sample's own grade. Labels go to DIR/{MC_LABELS_NAME}; rerunning resumes. It costs
about K x (steps - 1) continuations per sample; the summary says what it cost.

example:
  ponder learn label data/arith-train --server http://127.0.0.1:8000 --rollouts 4 \\
      --param max_new_tokens=256 --limit 20
  ponder learn export data/arith-train --format prm --labels mc --out prm-mc.jsonl
"""


def label_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder learn label",
        description="Monte-Carlo step labels for a collect folder (rollouts over HTTP).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="a `ponder learn collect` --out folder")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="Ponder base URL")
    parser.add_argument("--rollouts", type=int, default=4, help="continuations per step (K)")
    parser.add_argument("--limit", type=int, help="label only the first N problems")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        help="key=value /v1/solve field for every rollout, e.g. max_new_tokens=256",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed of the rollouts")
    add_client_arguments(parser)
    return parser


def run_label(argv: list[str]) -> int:
    args = label_parser().parse_args(argv)
    try:
        if args.rollouts < 1:
            raise ValueError("--rollouts must be at least 1")
        params = parse_params(args.param)
        fixed = {"n", "strategy", "selection", "answer_prefix", "question", "seed"} & set(params)
        if fixed:
            raise ValueError(f"--param cannot set {', '.join(sorted(fixed))}: label sets them")
        folder = load_folder(args.folder)
        if folder.kind != "collect":
            raise ValueError(f"{args.folder} is not a `ponder learn collect` folder")
    except (ValueError, OSError) as error:
        print(f"ponder learn label: {error}", file=sys.stderr)
        return 2
    problems = folder.problems[: args.limit] if args.limit else folder.problems
    request = LabelRequest(args.rollouts, params)
    try:
        outcome = asyncio.run(
            label_folder(args.folder, problems, request, sweep_options(args), args.seed)
        )
    except RequestRejected as error:
        print(f"ponder learn label: the server rejected a rollout: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(f"ponder learn label: cannot reach {args.server}: {error}", file=sys.stderr)
        return 2
    per_sample = outcome.generated_tokens / outcome.samples if outcome.samples else 0.0
    print(
        f"{outcome.samples} samples labelled ({outcome.skipped} already were), "
        f"{outcome.requests} rollout requests of {args.rollouts}, "
        f"{outcome.generated_tokens} generated tokens ({per_sample:.0f} per sample), "
        f"{outcome.wall_s:.0f} s -> {args.folder / MC_LABELS_NAME}"
    )
    for failure in outcome.failures:
        print(f"failed: {failure}", file=sys.stderr)
    if outcome.failures:
        print("rerun the same command to retry the failed problems", file=sys.stderr)
        return 1
    return 0
