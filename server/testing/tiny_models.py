"""Tiny random-weight PRMs for tests and benchmarks, from the embedded model's tokenizer.

Nothing is downloaded: the tokenizer is SmolLM2's (prepared by `make model`) with the
PRM tokens added, and the weights are random. The models judge nothing, but they run
through exactly the vLLM code paths the real PRMs use (same architectures, same
pooler, same logprob reads), which is what the engine tests check (fixture
`tiny_prms` in `tests/engine_fixtures.py`) and `benchmarks/bench_rewards.py` times.
It imports torch: the server never imports it, nor do the fast tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

#: Step tag of Qwen2.5-Math-PRM and of Math-Shepherd; labels of the token-logit PRMs.
QWEN_STEP_TAG = "<extra_0>"
SHEPHERD_STEP_TAG = "ки"
#: head_dim 64: the CPU attention rejects smaller heads.
_HIDDEN, _HEADS, _LAYERS = 128, 2, 2


def _tokenizer_with(tokens: list[str], special: bool, source: Path, target: Path) -> int:
    """Save SmolLM2's tokenizer plus `tokens` into `target`; return the vocab size."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    target.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_tokens([AddedToken(t, special=special, normalized=False) for t in tokens])
    tokenizer.save_pretrained(target)
    template = source / "chat_template.jinja"
    if template.exists() and not (target / "chat_template.jinja").exists():
        shutil.copy(template, target / "chat_template.jinja")
    return len(tokenizer)


def _shape(vocab: int) -> dict[str, Any]:
    """The tiny transformer's size; the vocabulary padded to a multiple of 64."""
    return dict(
        vocab_size=(vocab + 63) // 64 * 64,
        hidden_size=_HIDDEN,
        intermediate_size=256,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        num_key_value_heads=_HEADS,
        head_dim=_HIDDEN // _HEADS,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
    )


def _save(state: dict[str, torch.Tensor], config: dict[str, Any], target: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(target / "model.safetensors"))
    (target / "config.json").write_text(json.dumps(config, indent=2))


def build_tiny_qwen_prm(tokenizer_source: Path, target: Path, seed: int = 0) -> Path:
    """A `Qwen2ForProcessRewardModel` (Qwen2 body, score head h->h->2) with `<extra_0>`."""
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config(**_shape(_tokenizer_with([QWEN_STEP_TAG], True, tokenizer_source, target)))
    torch.manual_seed(seed)
    body = Qwen2Model(config)
    state = {f"model.{k}": v for k, v in body.state_dict().items()}
    # Larger than default init so the random head gives visibly different scores.
    state["score.0.weight"] = torch.randn(_HIDDEN, _HIDDEN) * 0.5
    state["score.0.bias"] = torch.randn(_HIDDEN) * 0.1
    state["score.2.weight"] = torch.randn(2, _HIDDEN) * 0.5
    state["score.2.bias"] = torch.zeros(2)
    data = config.to_dict()
    data.update(
        architectures=["Qwen2ForProcessRewardModel"],
        num_labels=2,
        torch_dtype="float32",
        dtype="float32",
    )
    _save(state, data, target)
    return target


def build_tiny_token_prm(tokenizer_source: Path, target: Path, seed: int = 0) -> Path:
    """A `LlamaForCausalLM` whose tokenizer has `ки` (and `+`/`-`) as single tokens."""
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = _tokenizer_with([SHEPHERD_STEP_TAG], False, tokenizer_source, target)
    config = LlamaConfig(**_shape(vocab), bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a spread-out next-token distribution, not a flat one
        model.lm_head.weight.normal_(0.0, 0.1)
    data = config.to_dict()
    data.update(architectures=["LlamaForCausalLM"], torch_dtype="float32", dtype="float32")
    _save(model.state_dict(), data, target)
    return target
