"""The engine fixtures: the embedded model, tiny PRMs and the shared real Ponder servers.

`tests/conftest.py` imports these fixtures, and marks every test that uses one of
them (directly or through another fixture) `engine`. Nothing heavy is imported at
module level: the model preparation, the tiny PRM builders (torch) and the vLLM
helpers are imported inside the fixtures, so `make test-fast` (`-m "not engine"`)
collects every test module without loading torch or vLLM.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import (
    ENGINE_FLAGS,
    TEST_DTYPE,
    RunningServer,
    ponder_command,
    shifting_seeds_client,
    start_server,
)

#: Server maximums the session server runs with; tests check requests against them.
MAX_N = 32
MAX_NEW_TOKENS = 256
#: Short, so that every streamed search in the tests sends keepalive comments.
SSE_KEEPALIVE_S = 0.2


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    from server.model_prep import prepare_embedded_model

    return prepare_embedded_model()


@pytest.fixture(scope="session")
def tiny_prms(embedded_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random-weight PRMs (Qwen2 PRM with `<extra_0>`, Llama with `ки`), built once."""
    from server.testing.tiny_models import build_tiny_qwen_prm, build_tiny_token_prm  # torch

    root = tmp_path_factory.mktemp("tiny-prms")
    return {
        "qwen": build_tiny_qwen_prm(embedded_model, root / "qwen-prm"),
        "token": build_tiny_token_prm(embedded_model, root / "token-prm"),
    }


def _serve(
    dtype: str,
    embedded_model: Path,
    tiny_prms: dict[str, Path],
    log: Path,
    *memory_flags: str,
) -> Iterator[RunningServer]:
    """A live `ponder serve` on the embedded model (real vLLM) in `dtype`, with the tiny
    Qwen2 PRM as a second in-process engine (reward "prm") and the tiny Math-Shepherd
    PRM as a third (reward "shepherd", a named learned PRM).

    Stopping it at the end doubles as the lifecycle check: SIGTERM must leave no
    engine process (policy or PRM) behind.
    """
    server = start_server(
        ponder_command(
            "--policy",
            str(embedded_model),
            "--served-model-name",
            "smollm2-135m-instruct",
            "--block-size",
            "32",
            "--max-n",
            str(MAX_N),
            "--reward",
            "arithmetic,self-judge",
            "--prm",
            str(tiny_prms["qwen"]),
            # A second learned PRM, named: one server offers both (test_prm_http.py).
            "--reward",
            f"shepherd=math-shepherd:{tiny_prms['token']}",
            "--prm-gpu-memory-utilization",
            "0.1",
            "--max-new-tokens",
            str(MAX_NEW_TOKENS),
            "--sse-keepalive-s",
            str(SSE_KEEPALIVE_S),
            "--dtype",
            dtype,
            *ENGINE_FLAGS,
            *memory_flags,
        ),
        log,
        "/health",
    )
    yield server
    leftovers = server.stop()
    # uvicorn re-raises the SIGTERM it handled once shutdown is complete.
    assert server.process.returncode in (0, -signal.SIGTERM), server.log_tail()
    assert "Application shutdown complete" in server.log_tail()
    assert not leftovers, f"engine processes outlived the server: {leftovers}"


@pytest.fixture(scope="session")
def ponder_server(
    embedded_model: Path, tiny_prms: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The server most tests share, in the dtype a user gets on this CPU (TEST_DTYPE).

    Tests on it may compare decisions and structure, never bit-identical repeats:
    in bf16 a repeat can run in another batch shape or from the prefix cache and
    round differently (docs/reproducibility.md).
    """
    log = tmp_path_factory.mktemp("ponder") / "server.log"
    yield from _serve(TEST_DTYPE, embedded_model, tiny_prms, log)


#: A second server beside the session one reserves less: vLLM's CPU build refuses to
#: start an engine whose reservation exceeds the NUMA node's free memory, and with
#: two servers of three engines each the module's other engines did not fit.
SECOND_SERVER_MEMORY = ("--gpu-memory-utilization", "0.1", "--prm-gpu-memory-utilization", "0.05")


@pytest.fixture(scope="module")
def float32_server(
    request: pytest.FixtureRequest,
    embedded_model: Path,
    tiny_prms: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """A server in float32, for the tests whose claim is that repeats are bit-identical
    (the reproducibility contract, docs/reproducibility.md, promises that in float32 only).

    That is the session server itself where it already runs in float32 (`auto` on
    CPUs without bf16 instructions). Elsewhere it is a second server, one per module
    that uses it and stopped at the module's end, so that it never holds memory while
    other modules start engines of their own (on a bf16 CPU, engines of a session
    and a session-long second server left too little for test_prm_vllm's four).
    """
    from server.policy.vllm_engine import resolve_dtype

    if resolve_dtype(TEST_DTYPE) == "float32":
        yield request.getfixturevalue("ponder_server")
        return
    log = tmp_path_factory.mktemp("ponder-float32") / "server.log"
    yield from _serve("float32", embedded_model, tiny_prms, log, *SECOND_SERVER_MEMORY)


@pytest.fixture()
def client(ponder_server: RunningServer) -> Iterator[httpx.Client]:
    """The shared server, with every seed shifted so no repeat draws the same samples
    (`tests.servers.ShiftingSeeds`: what a bf16 machine may do, on every machine)."""
    with shifting_seeds_client(ponder_server.url) as http:
        yield http


@pytest.fixture()
def float32_client(float32_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=float32_server.url, timeout=300) as http:
        yield http


#: A test that uses any of these (directly or through another fixture) is an engine test.
ENGINE_FIXTURES = frozenset(
    {"embedded_model", "tiny_prms", "ponder_server", "float32_server", "client", "float32_client"}
)
