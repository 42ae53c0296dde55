"""The all-or-nothing model folder every `ponder learn train-*` writes through."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from learning.training import remove_stale_partials, write_model_folder


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_complete_fill_is_renamed_into_place(tmp_path: Path) -> None:
    out = tmp_path / "models" / "m"

    def fill(staging: Path) -> str:
        (staging / "config.json").write_text("{}")
        return "done"

    assert write_model_folder(out, fill) == "done"
    assert (out / "config.json").is_file() and _hidden(out.parent) == []


def test_sigterm_during_training_leaves_nothing(tmp_path: Path) -> None:
    """`kill PID` (SIGTERM) cleans up like Ctrl-C: no folder, no staging left."""
    out = tmp_path / "m"

    def fill(staging: Path) -> None:
        (staging / "weights").write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    with pytest.raises(SystemExit):
        write_model_folder(out, fill)
    assert not out.exists() and _hidden(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_staging_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "m"
    dead, alive = tmp_path / ".m.partial-999999999", tmp_path / f".m.partial-{os.getpid()}"
    other = tmp_path / ".other.partial-999999999"
    for folder in (dead, alive, other):
        folder.mkdir()
    assert remove_stale_partials(out) == [dead]
    assert _hidden(tmp_path) == sorted([alive.name, other.name])
