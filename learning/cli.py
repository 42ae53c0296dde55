"""`ponder learn collect` (searches into training samples), `ponder learn export`
(samples into TRL dataset files); the training commands are in `learning.train_cli`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import httpx

from clients.bench.cli import (
    add_client_arguments,
    add_problem_arguments,
    add_run_target_arguments,
    problems_from,
    sweep_options,
)
from clients.bench.client import RequestRejected
from clients.bench.datasets import JsonlFields, Subset, parse_levels
from clients.bench.grid import parse_params
from learning.collect import (
    collect,
    collect_cell,
    manifest_entry,
    record_collect,
    record_outcome,
    summary,
    training_set,
)
from learning.export import FORMATS, balanced, records, write_jsonl
from learning.label_cli import run_label
from learning.labels import LABEL_METHODS, labeler, outcome_labels
from learning.overlap import (
    EvalSet,
    eval_set_from_file,
    eval_set_from_spec,
    published_eval_set,
)
from learning.records import COLLECTED_NAME, DEFAULT_SYSTEM_PROMPT, MANIFEST_NAME
from learning.sources import Sample, SolvedProblem, load_folder
from learning.train_cli import run_train_policy, run_train_prm

_USAGE = """\
usage: ponder learn {collect,label,export,train-prm,train-policy} ...
  collect       search training problems, keep every sample graded (HTTP)
  label         Monte-Carlo step labels: K rollouts from every step (HTTP)
  export        write collected samples as a TRL dataset file (prm, dpo, sft)
  train-prm     train a Math-Shepherd-style PRM on an `export --format prm` file
  train-policy  fine-tune the policy on an `export --format sft|dpo` file (TRL)
`ponder learn COMMAND --help` for its flags."""

_COLLECT_EPILOG = f"""\
Every problem is searched once with --samples samples (best-of-N by default, so all
N come back as candidates); each sample is graded against the gold answer and kept
with its text and steps, one row per problem in DIR/{COLLECTED_NAME}. Rerunning the
same command with the same --out resumes. Before any request the training problems
are compared, by id and question text, with the evaluation set (default: the
published sweeps' 100 level-1 arithmetic and 50 GSM8K problems); any overlap is
refused unless --drop-overlap. The check's result goes to DIR/{MANIFEST_NAME}.

example:
  ponder learn collect --server http://127.0.0.1:8000 --dataset arithmetic --levels 1,2 \\
      --seed 7 --limit 200 --samples 8 --reward arithmetic --param max_new_tokens=256 \\
      --out data/arith-train
"""


def collect_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder learn collect",
        description="Collect graded samples of searches on training problems (HTTP only).",
        epilog=_COLLECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_target_arguments(parser)
    add_problem_arguments(parser)
    search = parser.add_argument_group("what to run")
    search.add_argument(
        "--strategy", default="best_of_n", help="search strategy (default best_of_n)"
    )
    search.add_argument("--samples", type=int, default=8, help="samples per problem (the n sent)")
    search.add_argument(
        "--param",
        action="append",
        default=[],
        help="key=value /v1/solve field for every request, e.g. max_new_tokens=256",
    )
    search.add_argument(
        "--reward",
        help="reward client; best-of-N then selects by weighted "
        "reward, so every sample's score is its reward",
    )
    search.add_argument(
        "--system-prompt",
        default=DEFAULT_SYSTEM_PROMPT,
        help="sent with every request and kept in the rows (default: the server's default prompt)",
    )
    evaluation = parser.add_argument_group(
        "evaluation set (never trained on; default: the published sweeps' problems)"
    )
    evaluation.add_argument(
        "--eval-dataset",
        action="append",
        help="evaluation dataset (default: the training --dataset)",
    )
    evaluation.add_argument("--eval-levels", help="evaluation levels (default: --levels)")
    evaluation.add_argument("--eval-seed", type=int, help="evaluation seed")
    evaluation.add_argument("--eval-limit", type=int, help="evaluation problems per dataset")
    evaluation.add_argument(
        "--eval-ids",
        type=Path,
        help="file of evaluation problem ids, one a line, or JSONL rows "
        "with problem_id (and question), e.g. a bench results.jsonl",
    )
    evaluation.add_argument(
        "--drop-overlap",
        action="store_true",
        help="leave overlapping training problems out instead of refusing",
    )
    add_client_arguments(parser)
    return parser


def _eval_set(args: argparse.Namespace) -> EvalSet:
    custom = (args.eval_dataset, args.eval_levels, args.eval_seed, args.eval_limit)
    if args.eval_ids is not None:
        if any(value is not None for value in custom):
            raise ValueError("give either --eval-ids or --eval-dataset/--eval-seed/..., not both")
        return eval_set_from_file(args.eval_ids)
    if all(value is None for value in custom):
        return published_eval_set()
    subset = Subset(
        limit=args.eval_limit,
        levels=parse_levels(args.eval_levels or args.levels),
        seed=args.eval_seed,
    )
    fields = JsonlFields(args.question_field, args.answer_field, args.id_field, args.level_field)
    return eval_set_from_spec(args.eval_dataset or args.dataset, subset, fields)


def run_collect(argv: list[str]) -> int:
    args = collect_parser().parse_args(argv)
    try:
        if args.samples < 1:
            raise ValueError("--samples must be at least 1")
        cell = collect_cell(
            args.strategy, args.samples, parse_params(args.param), args.reward, args.system_prompt
        )
        train = training_set(problems_from(args), _eval_set(args), args.drop_overlap)
    except (ValueError, OSError) as error:  # OverlapRefused included
        print(f"ponder learn collect: {error}", file=sys.stderr)
        return 2
    print(train.check_message())
    args.out.mkdir(parents=True, exist_ok=True)
    record_collect(args.out, manifest_entry(argv, train, cell, args.server))
    try:
        outcome, rows = asyncio.run(collect(train, cell, args.out, sweep_options(args)))
    except KeyboardInterrupt:
        record_outcome(args.out, {"interrupted": True})
        print("ponder learn collect: interrupted; rerun the command to resume", file=sys.stderr)
        return 130
    except RequestRejected as error:
        record_outcome(args.out, {"error": f"rejected: {error}"})
        print(f"ponder learn collect: the server rejected a request: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        record_outcome(args.out, {"error": f"unreachable: {type(error).__name__}: {error}"})
        print(
            f"ponder learn collect: cannot reach {args.server}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 2
    record_outcome(
        args.out,
        {"requests": outcome.requests, "skipped": outcome.skipped, "failed": len(outcome.failures)},
    )
    print(
        f"{outcome.requests} requests, {outcome.skipped} already done (resumed), "
        f"{len(outcome.failures)} failed"
    )
    if rows:
        print(f"{args.out}/{COLLECTED_NAME}: {summary(rows)}")
    for failure in outcome.failures:
        print(f"failed: {failure}", file=sys.stderr)
    if outcome.failures:
        print("rerun the same command to retry the failed requests", file=sys.stderr)
        return 1
    return 0


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ponder learn export",
        description="Write a collect folder (or a `ponder bench --keep-texts` folder) as a "
        "TRL dataset file: prm (stepwise supervision), dpo (preference pairs: a right and "
        "a wrong sample of one problem), sft (conversations of right samples).",
    )
    parser.add_argument(
        "folder", type=Path, help="a `ponder learn collect` or `ponder bench` --out folder"
    )
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, type=Path, help="the .jsonl file to write")
    parser.add_argument(
        "--labels",
        choices=LABEL_METHODS,
        default="outcome",
        help="step labels for --format prm (outcome: each step gets its sample's grade; "
        "mc: right if any rollout of `ponder learn label` from it is; mc-soft: if at "
        "least half are)",
    )
    parser.add_argument(
        "--system-prompt",
        help="system prompt for rows that record none (bench folders; "
        "default: the server's default prompt)",
    )
    parser.add_argument(
        "--wrong-per-right",
        type=float,
        help="prm: keep every right sample and at most this many wrong samples per right "
        "one, wrong samples of problems with a right one first (default: all)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def run_export(argv: list[str]) -> int:
    args = export_parser().parse_args(argv)
    try:
        folder = load_folder(args.folder, args.system_prompt)
        label = labeler(args.labels, args.folder) if args.format == "prm" else outcome_labels
        problems = folder.problems
        if args.wrong_per_right is not None:
            if args.format != "prm" or args.wrong_per_right < 0:
                raise ValueError("--wrong-per-right is a number >= 0, for --format prm only")
            problems = balanced(problems, args.wrong_per_right)
        unlabelled = 0

        def counted(problem: SolvedProblem, sample: Sample) -> list[bool] | None:
            nonlocal unlabelled
            labels = label(problem, sample)
            unlabelled += labels is None
            return labels

        written = write_jsonl(args.out, records(args.format, problems, counted), args.overwrite)
    except (ValueError, OSError) as error:
        print(f"ponder learn export: {error}", file=sys.stderr)
        return 2
    for note in folder.notes:
        print(f"note: {note}", file=sys.stderr)
    if unlabelled:
        print(
            f"note: {unlabelled} samples have no {args.labels} labels (not labelled by "
            "`ponder learn label`, or with other steps) and were left out",
            file=sys.stderr,
        )
    labels = f", {args.labels} step labels" if args.format == "prm" else ""
    print(
        f"{written.records} {args.format} records from {len(folder.problems)} problems "
        f"({folder.kind} folder{labels}) -> {written.path}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "collect": run_collect,
        "label": run_label,
        "export": run_export,
        "train-prm": run_train_prm,
        "train-policy": run_train_policy,
    }
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    asked = bool(argv) and argv[0] in ("-h", "--help")
    print(_USAGE, file=sys.stdout if asked else sys.stderr)
    return 0 if asked else 2
