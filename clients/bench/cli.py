"""`ponder bench` (run a sweep) and `ponder bench report` (rebuild its tables and plot)."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from clients.bench.client import RequestRejected, RetryPolicy
from clients.bench.coverage import coverage, coverage_table
from clients.bench.datasets import (
    BUILTIN,
    BenchProblem,
    JsonlFields,
    Subset,
    load_dataset,
    parse_levels,
)
from clients.bench.grid import Cell, expand, load_grid_file, parse_params, parse_run
from clients.bench.report import markdown_table, summarize, write_report
from clients.bench.store import RESULTS_NAME, ResultsFile, Row, read_rows, results_path
from clients.bench.sweep import SweepOptions, rows_for, run_sweep

DEFAULT_RUN = "best_of_n n=16 selection=weighted"

_EPILOG = f"""\
runs (--run, repeatable): a strategy then key=value pairs; comma-separated values
are swept. Keys are /v1/solve fields (n, selection, max_new_tokens, temperature,
seed, any strategy parameter), budget.max_tokens / budget.max_reward_calls /
budget.time_limit_s, reward, and label (the plot line's name). best_of_n with one n
is run once and subsampled into curves for n = 1, 2, 4, ... (majority, and with a
reward selection also weighted and max_reward); subsample=false sends each n.
seed is a base: each problem gets base + hash(problem id); seed=none sends none.
Default run: "{DEFAULT_RUN}".

examples:
  ponder bench --server http://127.0.0.1:8000 --dataset arithmetic --levels 1 --limit 20 \\
      --run "best_of_n n=8 selection=weighted" --param reward=arithmetic --out results/bon
  ponder bench --dataset gsm8k --limit 50 --seed 1 --param max_new_tokens=256 \\
      --run "best_of_n n=16 selection=weighted" \\
      --run "beam_search budget.max_tokens=512,1024,2048,4096" --out results/gsm8k
  ponder bench --dataset arithmetic --grid clients/bench/grids/scaling.toml --out results/grid
  ponder bench report results/bon/{RESULTS_NAME}

Rerunning the same command with the same --out resumes: problems already in
{RESULTS_NAME} are skipped; other datasets or runs into the same --out add up, and
the outputs always summarise the whole file. Outputs in --out: {RESULTS_NAME} (one
row per problem and line point), summary.csv, unparseable.csv, plot.png, plot.json.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder bench",
        description="Accuracy vs inference compute of search strategies on a running Ponder "
        "server (HTTP only). `ponder bench report RESULTS.jsonl` rebuilds the outputs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_target_arguments(parser)
    parser.add_argument(
        "--keep-texts",
        action="store_true",
        help="best-of-N rows also keep the question and every sample's text "
        "(for `ponder learn export`)",
    )
    add_problem_arguments(parser)
    grid = parser.add_argument_group("what to run")
    grid.add_argument("--run", action="append", default=[], help="a run spec (see below)")
    grid.add_argument("--grid", type=Path, help="TOML file with [defaults] and [[run]] tables")
    grid.add_argument(
        "--param",
        action="append",
        default=[],
        help="key=value applied to every run unless it sets the key",
    )
    grid.add_argument("--reward", help="reward client for every run (same as --param reward=NAME)")
    add_client_arguments(parser)
    return parser


def add_run_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--server, --dataset and --out: where a run goes; shared with `ponder learn`."""
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="Ponder base URL")
    parser.add_argument(
        "--dataset",
        action="append",
        required=True,
        help=f"one of {', '.join(BUILTIN)} or a JSONL path (repeatable)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (resumable)")


def add_problem_arguments(parser: argparse.ArgumentParser) -> None:
    """--limit/--levels/--seed and the JSONL field flags; shared with `ponder learn`."""
    subset = parser.add_argument_group("problem subset")
    subset.add_argument("--limit", type=int, help="problems per dataset (arithmetic: default 100)")
    subset.add_argument(
        "--levels",
        help="difficulty levels, e.g. 1 or 1,2 or 1-3 "
        "(arithmetic: operations per problem; math500: MATH level)",
    )
    subset.add_argument(
        "--seed",
        type=int,
        help="sample --limit problems with this seed (arithmetic: the generator's seed, default 0)",
    )
    jsonl = parser.add_argument_group("JSONL datasets")
    jsonl.add_argument("--question-field", default="question")
    jsonl.add_argument("--answer-field", default="answer")
    jsonl.add_argument("--id-field", help="stable problem id (default: line index)")
    jsonl.add_argument("--level-field", help="field --levels filters on")
    jsonl.add_argument(
        "--grader",
        choices=["auto", "numeric", "math"],
        default="auto",
        help="auto: numeric when the gold is a plain number, else math-verify",
    )


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """Concurrency, retries, timeout, progress bar; shared with `ponder learn`."""
    client = parser.add_argument_group("client")
    client.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    client.add_argument("--retries", type=int, default=6, help="retries on 429/5xx/disconnects")
    client.add_argument(
        "--backoff", type=float, default=1.0, help="first retry delay (s), doubling"
    )
    client.add_argument("--timeout", type=float, default=1800.0, help="per-request timeout (s)")
    client.add_argument("--no-progress", action="store_true", help="no progress bar")


def sweep_options(args: argparse.Namespace) -> SweepOptions:
    """The client flags of `add_client_arguments` as sweep options."""
    return SweepOptions(
        server=args.server,
        concurrency=args.concurrency,
        retry=RetryPolicy(retries=args.retries, backoff_s=args.backoff),
        timeout_s=args.timeout,
        progress=not args.no_progress,
    )


def _cells(args: argparse.Namespace) -> list[Cell]:
    defaults: dict[str, Any] = {}
    specs: list[dict[str, Any]] = []
    if args.grid:
        defaults, specs = load_grid_file(args.grid)
    defaults.update(parse_params(args.param))
    if args.reward:
        defaults["reward"] = args.reward
    specs += [parse_run(text) for text in args.run]
    return expand(specs or [parse_run(DEFAULT_RUN)], defaults)


def problems_from(args: argparse.Namespace) -> list[BenchProblem]:
    """The problems `--dataset` and the `add_problem_arguments` flags select."""
    subset = Subset(limit=args.limit, levels=parse_levels(args.levels), seed=args.seed)
    fields = JsonlFields(args.question_field, args.answer_field, args.id_field, args.level_field)
    grader = None if args.grader == "auto" else args.grader
    problems: list[BenchProblem] = []
    for name in args.dataset:
        problems += load_dataset(name, subset, fields, grader)
    return problems


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        cells = _cells(args)
        problems = problems_from(args)
    except (ValueError, OSError) as error:
        print(f"ponder bench: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "commands.txt").open("a") as log:
        log.write(
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
            f"ponder bench {shlex.join(argv)}\n"
        )
    results = ResultsFile(args.out / RESULTS_NAME)
    to_rows = partial(rows_for, keep_texts=args.keep_texts)
    started = time.monotonic()
    try:
        outcome = asyncio.run(run_sweep(problems, cells, results, sweep_options(args), to_rows))
    except RequestRejected as error:
        print(f"ponder bench: the server rejected a request: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(
            f"ponder bench: cannot reach {args.server}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 2
    finally:
        results.close()
    wall = time.monotonic() - started
    # The folder's outputs always describe its whole results file (as `report` does),
    # so runs of other datasets or grids into the same --out add up.
    rows = results.rows
    print(
        f"{outcome.requests} requests in {wall:.1f} s, {outcome.skipped} already done "
        f"(resumed), {len(outcome.failures)} failed"
    )
    if outcome.selection_mismatches:
        print(
            f"warning: {outcome.selection_mismatches} subsampled picks at N_max differ from "
            "the server's answer",
            file=sys.stderr,
        )
    if rows:
        print_report(rows, args.out)
        print(
            f"outputs in {args.out}/: {RESULTS_NAME} summary.csv coverage.csv "
            "unparseable.csv plot.png"
        )
    for failure in outcome.failures:
        print(f"failed: {failure}", file=sys.stderr)
    if outcome.failures:
        print("rerun the same command to retry the failed requests", file=sys.stderr)
        return 1
    return 0


def report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ponder bench report",
        description="Rebuild summary.csv, coverage.csv, unparseable.csv and plot.png from a "
        "results file.",
    )
    parser.add_argument("results", type=Path, help=RESULTS_NAME + " of a bench run, or its folder")
    parser.add_argument("--out", type=Path, help="output folder (default: the file's folder)")
    args = parser.parse_args(argv)
    results = results_path(args.results)
    rows = read_rows(results)
    if not rows:
        print(f"ponder bench report: no rows in {results}", file=sys.stderr)
        return 2
    out = args.out or results.parent
    print_report(rows, out)
    print(f"outputs in {out}/: summary.csv coverage.csv unparseable.csv plot.png plot.json")
    return 0


def print_report(rows: list[Row], out: Path) -> None:
    """Write the outputs and print the accuracy table (and coverage, if any)."""
    print(markdown_table(write_report(rows, out)))
    table = coverage(rows)
    if table:
        print("\nWhat the best-of-N samples hold (pass@k = a perfect verifier at N = k):\n")
        print(coverage_table(table))


_COMPARE_EPILOG = """\
example:
  ponder bench compare --line 'verifier=results/eval:arithmetic/weighted' \\
      --line 'learned=results/eval:learned/weighted' \\
      --pair results/eval:learned/weighted:n=8 results/eval:arithmetic/weighted:n=8 \\
      --plot plot.png
"""


def compare(argv: list[str]) -> int:
    from clients.bench import compare as cmp

    parser = argparse.ArgumentParser(
        prog="ponder bench compare",
        description="Put lines from several bench result folders on one plot (Wilson "
        "intervals) and sign-test pairs of cells on the problems both answered.",
        epilog=_COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="NAME=RESULTS:LABEL",
        help="a line: every setting of LABEL in RESULTS (a results.jsonl or its folder)",
    )
    parser.add_argument(
        "--pair",
        action="append",
        nargs=2,
        default=[],
        metavar="RESULTS:LABEL:SETTING",
        help="sign-test cell A against cell B (repeatable)",
    )
    parser.add_argument("--plot", type=Path, help="write the lines' plot here (png)")
    parser.add_argument("--title", default="", help="the plot's title")
    args = parser.parse_args(argv)
    cache: dict[Path, list[Row]] = {}
    try:
        named = []
        for spec in args.line:
            name, sep, ref = spec.partition("=")
            if not sep or not name:
                raise ValueError(f"--line {spec!r}: expected NAME=RESULTS:LABEL")
            named.append((name, cmp.CellRef.parse(ref, need_setting=False)))
        data = cmp.lines(named, cache)
        tests = []
        for a_spec, b_spec in args.pair:
            a, b = (cmp.CellRef.parse(x, need_setting=True) for x in (a_spec, b_spec))
            tests.append(cmp.paired(a.rows(cache), b.rows(cache), a_spec, b_spec))
    except (ValueError, OSError) as error:
        print(f"ponder bench compare: {error}", file=sys.stderr)
        return 2
    if data:
        print(cmp.lines_table(data))
    if tests:
        print("\n" + cmp.pairs_table(tests))
    if args.plot and data:
        cmp.plot(data, args.plot, args.title)
        print(f"\nplot: {args.plot}")
    return 0


def fit_auto(argv: list[str]) -> int:
    from clients.bench.fit_auto import FitError, fit

    parser = argparse.ArgumentParser(
        prog="ponder bench fit-auto",
        description="The auto strategy's policy table from sweep results: per difficulty "
        "bin and budget, the strategy that scored best (docs/strategies.md, auto).",
    )
    parser.add_argument("results", nargs="+", type=Path, help="results.jsonl files of one sweep")
    parser.add_argument("--out", type=Path, required=True, help="the table to write (JSON)")
    parser.add_argument("--probe-n", type=int, default=2, help="probe samples (default 2)")
    parser.add_argument("--feature", choices=("mean_reward", "agreement"), default="mean_reward")
    parser.add_argument("--bins", type=int, default=3, help="difficulty bins (default 3)")
    args = parser.parse_args(argv)
    try:
        policy = fit(args.results, args.probe_n, args.feature, args.bins)
    except (FitError, OSError) as error:
        print(f"ponder bench fit-auto: {error}", file=sys.stderr)
        return 2
    args.out.write_text(policy.model_dump_json(indent=1) + "\n", encoding="utf-8")
    for edge in policy.bins:
        picks = ", ".join(
            f"{c.strategy} from {c.max_tokens} tok ({c.accuracy:.2f} on {c.problems})"
            for c in policy.choices[edge.name]
        )
        print(f"{edge.name} ({policy.feature} <= {edge.upper:.3f}): {picks}")
    print(f"wrote {args.out}")
    return 0


def efficiency(argv: list[str]) -> int:
    from clients.bench.efficiency import (
        DEFAULT_REFERENCE,
        auto_choices,
        by_level,
        matches,
        matches_table,
    )

    parser = argparse.ArgumentParser(
        prog="ponder bench efficiency",
        description="The compute each line needs to match a reference line's best "
        "accuracy (Snell et al.'s compute saving), with --by-level the accuracy of "
        "every cell per difficulty level, and what auto chose (when rows record it).",
    )
    parser.add_argument("results", type=Path, help="a results folder or results.jsonl")
    parser.add_argument(
        "--reference", default=DEFAULT_REFERENCE, help=f"the line to match ({DEFAULT_REFERENCE})"
    )
    parser.add_argument("--by-level", action="store_true", help="also a per-level table")
    args = parser.parse_args(argv)
    try:
        rows = read_rows(results_path(args.results))
        target, found = matches(summarize(rows), args.reference)
        print(matches_table(target, found))
        if args.by_level:
            print("\n" + by_level(rows))
        choices = auto_choices(rows)
        if choices:
            print("\nwhat auto chose:\n\n" + choices)
    except (ValueError, OSError) as error:
        print(f"ponder bench efficiency: {error}", file=sys.stderr)
        return 2
    return 0


def ensemble(argv: list[str]) -> int:
    from clients.bench.ensemble import EnsembleError, Member, ensemble_rows, write_rows

    parser = argparse.ArgumentParser(
        prog="ponder bench ensemble",
        description="A weighted-mean ensemble of rewards, replayed from best-of-N runs that "
        "drew the same samples under different rewards (same seeds): writes a results "
        "folder with its selections at every N, its coverage and AUROC.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RESULTS:RUN[:WEIGHT]",
        help="a results.jsonl (or its folder) and a run's label, e.g. eval:learned:1",
    )
    parser.add_argument("--label", default="ensemble", help="the ensemble's run label")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new)")
    args = parser.parse_args(argv)
    try:
        members = []
        for spec in args.runs:
            path, _, rest = spec.partition(":")
            run, _, weight = rest.partition(":")
            if not path or not run:
                raise EnsembleError(f"{spec!r}: expected RESULTS:RUN[:WEIGHT]")
            try:
                value = float(weight) if weight else 1.0
            except ValueError:
                raise EnsembleError(f"{spec!r}: the weight must be a number") from None
            members.append(Member(read_rows(results_path(Path(path))), run, value))
        rows = ensemble_rows(members, args.label)
        write_rows(rows, args.out)
    except (EnsembleError, OSError) as error:
        print(f"ponder bench ensemble: {error}", file=sys.stderr)
        return 2
    print_report(rows, args.out)
    print(f"outputs in {args.out}/")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        return report(argv[1:])
    if argv and argv[0] == "compare":
        return compare(argv[1:])
    if argv and argv[0] == "fit-auto":
        return fit_auto(argv[1:])
    if argv and argv[0] == "ensemble":
        return ensemble(argv[1:])
    if argv and argv[0] == "efficiency":
        return efficiency(argv[1:])
    return run(argv)
