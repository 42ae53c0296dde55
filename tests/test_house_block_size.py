"""The KV block size Ponder gives vLLM (issue 14, item 2).

On CPU vLLM's default block is large (apparently 128 tokens) and tree search's
short steps rarely fill one, so siblings missed the prefix cache; 32 (the smallest
the CPU attention accepts) is the default there. GPUs keep vLLM's own choice. The
cache-hit figures are in docs/benchmarks.md ("Prefix caching"); this checks the rule.
"""

from __future__ import annotations

import pytest

from server.policy import vllm_engine
from server.policy.vllm_engine import (
    CPU_BLOCK_SIZE,
    EngineOptions,
    engine_args,
    resolve_block_size,
)
from server.settings import Settings


@pytest.fixture()
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_engine, "has_cuda", lambda: False)


@pytest.fixture()
def cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_engine, "has_cuda", lambda: True)


def test_unset_block_size_is_32_on_cpu(cpu_only) -> None:
    assert CPU_BLOCK_SIZE == 32
    assert resolve_block_size(None) == 32


def test_unset_block_size_is_vllms_own_on_cuda(cuda) -> None:
    assert resolve_block_size(None) is None


@pytest.mark.parametrize("machine", ["cpu_only", "cuda"])
def test_a_block_size_the_user_set_wins(request: pytest.FixtureRequest, machine: str) -> None:
    request.getfixturevalue(machine)
    assert resolve_block_size(64) == 64


def test_the_engine_starts_with_32_on_cpu_by_default(cpu_only, monkeypatch) -> None:
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # engine_args may set it
    options = EngineOptions.from_settings(Settings(), "/models/m", "m", 0.25)
    assert options.block_size is None  # "unset" travels to where the device is known
    assert engine_args(options).block_size == 32
