"""What `train-prm` and `train-policy` share: the base model's default folder, the
options every trainer takes, the checks made before torch is loaded, and the
all-or-nothing output folder with its card.

learning/ never imports server/, so the embedded model's folder is computed here by
the same rule as `server/model_prep.py` (`$PONDER_CACHE` or `~/.cache/ponder`, then
`models/smollm2-135m-instruct`); a test keeps the two equal.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
#: `server/model_prep.py` writes this file last; without it the folder is half made.
PREPARED_MARKER = ".ponder-prepared"
CARD_JSON, CARD_MD = "card.json", "MODEL_CARD.md"

T = TypeVar("T")


def default_base_model() -> Path:
    """The embedded model's folder, as `server.model_prep.embedded_model_dir` makes it."""
    cache = Path(os.environ.get("PONDER_CACHE", Path.home() / ".cache" / "ponder"))
    return cache / "models" / EMBEDDED_MODEL_NAME


@dataclass
class TrainOptions:
    """Options every `ponder learn train-*` command takes (its CLI flags)."""

    data: Path
    out: Path
    base: Path = field(default_factory=default_base_model)
    epochs: float = 1.0
    max_steps: int | None = None
    lr: float = 2e-5
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    val_fraction: float = 0.1
    seed: int = 0
    dtype: str = "auto"  # training precision: auto | float32 | bfloat16 (autocast)
    overwrite: bool = False
    #: Extra `transformers.TrainerCallback`s (tests use one to interrupt a run).
    callbacks: list[Any] = field(default_factory=list)


SUMMARY_FIELDS = (
    "epochs",
    "max_steps",
    "lr",
    "batch_size",
    "grad_accum",
    "max_length",
    "val_fraction",
    "seed",
    "dtype",
)


def options_summary(options: TrainOptions, extra: Sequence[str] = ()) -> dict[str, Any]:
    """The hyper-parameters a card records."""
    return {k: getattr(options, k) for k in (*SUMMARY_FIELDS, *extra)}


def check_paths(options: TrainOptions) -> None:
    """Refuse an existing output, a missing base and out-of-range numbers before
    anything is loaded."""
    out, base = options.out, options.base
    if out.exists() and not options.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; --out names a model folder")
    if not (base / "config.json").is_file():
        hint = (
            " (the embedded model: run `ponder prepare-model` first)"
            if base == default_base_model()
            else ""
        )
        raise FileNotFoundError(f"base model {base} not found: no config.json there{hint}")
    if base == default_base_model() and not (base / PREPARED_MARKER).is_file():
        raise FileNotFoundError(f"base model {base} is half prepared; rerun `ponder prepare-model`")
    if out.resolve() == base.resolve():
        raise ValueError("--out must not be the --base folder")
    for name, value, low in (
        ("--batch-size", options.batch_size, 1),
        ("--grad-accum", options.grad_accum, 1),
        ("--max-length", options.max_length, 16),
    ):
        if value < low:
            raise ValueError(f"{name} must be at least {low}")
    if options.max_steps is not None and options.max_steps < 1:
        raise ValueError("--max-steps must be at least 1")
    if options.epochs <= 0 or options.lr <= 0 or not 0 <= options.val_fraction < 1:
        raise ValueError("--epochs and --lr must be positive and --val-fraction in [0, 1)")
    if options.dtype not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"--dtype: unknown {options.dtype!r}; auto, float32 or bfloat16")


def split_by_group(
    items: Sequence[T], group: Callable[[T], Hashable], fraction: float, seed: int
) -> tuple[list[T], list[T]]:
    """(train, validation): whole groups (questions) held out, so validation questions
    are unseen. At least one group is held out when `fraction` > 0 and there are two or
    more; never all of them."""
    keys = sorted({group(item) for item in items}, key=repr)
    random.Random(seed).shuffle(keys)
    count = min(len(keys) - 1, math.ceil(fraction * len(keys))) if fraction > 0 else 0
    held = set(keys[: max(0, count)])
    return (
        [item for item in items if group(item) not in held],
        [item for item in items if group(item) in held],
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove staging folders of `out` left by runs that were killed outright (SIGKILL,
    a power cut): their process is gone. Returns what was removed."""
    removed = []
    for path in out.parent.glob(f".{out.name}.partial-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM (`kill`, a job scheduler) raises SystemExit like
    Ctrl-C raises KeyboardInterrupt, so `finally`/`except` clean-up runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_model_folder(out: Path, fill: Callable[[Path], T]) -> T:
    """Run `fill(staging)` on a hidden sibling folder, then rename it to `out`.

    An interrupted or failed run (Ctrl-C and SIGTERM included) removes the staging
    folder, and one killed outright is removed by the next run, so `out` never holds a
    half model that `--prm` or `--policy` would load; an old `out` (--overwrite) is
    replaced only once the new one is complete.
    """
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with sigterm_as_exit():
            result = fill(staging)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        staging.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def train_into_folder(
    out: Path,
    fit: Callable[[Path], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """`fit(staging)` trains and saves into the staging folder and returns the card;
    the card (with the wall time) is written beside the model and the folder moved
    into place (`write_model_folder`). Returns the card."""
    started = time.monotonic()

    def fill(staging: Path) -> dict[str, Any]:
        card = fit(staging)
        card["wall_s"] = round(time.monotonic() - started, 1)
        write_card(staging, card, markdown(card))
        return card

    return write_model_folder(out, fill)


def write_card(folder: Path, card: dict[str, Any], markdown: str) -> None:
    """`card.json` (for programs) and `MODEL_CARD.md` (the same facts for people)."""
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / CARD_MD).write_text(markdown, encoding="utf-8")


def metric(value: Any) -> str:
    """A card's number: three decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
