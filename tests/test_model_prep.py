"""The embedded model is prepared once and reused; half-done work is not trusted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from server.model_prep import embedded_model_dir, is_prepared, prepare_embedded_model


def test_prepared_model_is_reused(embedded_model: Path) -> None:
    started = time.monotonic()
    assert prepare_embedded_model(embedded_model.parent.parent) == embedded_model
    assert time.monotonic() - started < 1.0  # no second conversion
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (embedded_model / name).is_file()


def test_folder_without_marker_is_not_prepared(tmp_path: Path) -> None:
    half_done = embedded_model_dir(tmp_path)
    half_done.mkdir(parents=True)
    (half_done / "config.json").write_text("{}")
    assert not is_prepared(half_done)


def test_prepare_model_command_prints_the_folder(embedded_model: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "prepare-model",
            "--cache-dir",
            str(embedded_model.parent.parent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == str(embedded_model)
