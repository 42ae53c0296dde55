"""The torch side every `ponder learn train-*` trainer shares: the training precision,
the base's stored dtype and saving a model folder vLLM loads.

Imported only once a command's inputs have been checked, so a refused command never
loads torch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch


def bf16_training(dtype: str) -> bool:
    """`auto`: bf16 autocast where it is fast (CUDA, or a CPU with bf16 instructions);
    on an AVX2-only CPU it is emulated and slower than float32 (PLATFORM.md)."""
    if dtype != "auto":
        return dtype == "bfloat16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def dtype_of(config: Any) -> torch.dtype:
    """The base's stored dtype (the trained model is saved in it; float32 if unsaid)."""
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def training_summary(trainer: Any, result: Any, tokens: int) -> dict[str, Any]:
    """The card's "training" entry: steps, losses, tokens and speed of a finished
    `Trainer.train()` (`result`), `tokens` being the tokens it trained on."""
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    seconds = float(result.metrics.get("train_runtime", 0.0))
    return {
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": result.training_loss,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        "tokens": tokens,
        "seconds": round(seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
    }


def save_model(model: Any, tokenizer: Any, dtype: torch.dtype, base: Path, folder: Path) -> None:
    """Weights (safetensors, in the base's dtype), config, tokenizer and chat template:
    a folder `ponder serve --policy` / `--prm` loads in vLLM. Trainer scratch files go."""
    model.config.use_cache = True
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    template = base / "chat_template.jinja"
    if template.is_file() and not (folder / template.name).exists():
        shutil.copy(template, folder / template.name)
    shutil.rmtree(folder / "trainer", ignore_errors=True)
