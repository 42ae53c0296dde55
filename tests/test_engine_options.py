"""How Ponder starts vLLM on a small CPU: which cores its worker computes on.

The speed-up itself is a benchmark figure (docs/benchmarks.md, "All cores on small CPUs");
this checks the rule: all cores on machines with at most four, the user's own setting
untouched.
"""

from __future__ import annotations

import pytest

from server.policy import vllm_engine
from server.policy.vllm_engine import bind_all_cores_on_small_cpus


@pytest.fixture()
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_engine, "has_cuda", lambda: False)


def cores(monkeypatch: pytest.MonkeyPatch, ids: set[int]) -> None:
    monkeypatch.setattr(vllm_engine.os, "sched_getaffinity", lambda pid: ids)


def test_two_cores_are_both_bound(cpu_only, monkeypatch) -> None:
    cores(monkeypatch, {1, 0})
    environ: dict[str, str] = {}
    bind_all_cores_on_small_cpus(environ)
    assert environ == {"VLLM_CPU_OMP_THREADS_BIND": "0,1"}


def test_the_users_binding_wins(cpu_only, monkeypatch) -> None:
    cores(monkeypatch, {0, 1})
    environ = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    bind_all_cores_on_small_cpus(environ)
    assert environ == {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}


@pytest.mark.parametrize("ids", [{0}, set(range(8))])
def test_one_core_or_many_keep_vllms_default(cpu_only, monkeypatch, ids) -> None:
    cores(monkeypatch, ids)
    environ: dict[str, str] = {}
    bind_all_cores_on_small_cpus(environ)
    assert environ == {}


def test_a_gpu_machine_is_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(vllm_engine, "has_cuda", lambda: True)
    cores(monkeypatch, {0, 1})
    environ: dict[str, str] = {}
    bind_all_cores_on_small_cpus(environ)
    assert environ == {}
