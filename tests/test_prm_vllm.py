"""Learned PRM clients on tiny random-weight models in real vLLM, in-process and remote.

One engine per model and transport for the whole module (4 in all): the in-process
ones run on a background event loop, the remote ones are `vllm serve` subprocesses
on loopback. Random weights judge nothing, so the tests check what must hold for
any weights: shapes, that scores line up with steps (a causal PRM's score of step k
cannot depend on later steps), probabilities, batch == single, in-process == remote.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from reward_clients.learned_prm import QwenPRM, TokenLogitPRM
from reward_clients.prm_formats import math_shepherd_text
from search_strategies.reward import RewardError, metering_reward_tokens, validate_scores
from server.policy.vllm_engine import EngineOptions
from server.prm.remote import RemotePRMBackend
from server.prm.vllm_local import LocalPRMBackend
from tests.servers import RunningServer, launch_server, wait_healthy

T = TypeVar("T")
QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"
SOLUTIONS = [
    ["Each bag has 4 marbles.", "3 * 4 = 12", "So Sam has 12 marbles. The answer is 12."],
    ["3 + 4 = 7", "The answer is 7."],
    ["12"],
]
TAG_ID = 49152  # the id the tiny models' tokenizer gives the added tag token
FLAGS = [
    "--enforce-eager",
    "--gpu-memory-utilization",
    "0.1",
    "--max-model-len",
    "1024",
    "--dtype",
    "float32",
]


class LoopThread:
    """One event loop for the module's in-process engines (vLLM binds to its loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


def _local(loop: LoopThread, model: Path, pooling: bool) -> LocalPRMBackend:
    async def start() -> LocalPRMBackend:
        options = EngineOptions(
            model=str(model),
            served_model_name="prm",
            max_model_len=1024,
            gpu_memory_utilization=0.1,
            enforce_eager=True,
            dtype="float32",
        )
        return LocalPRMBackend.start(options, pooling=pooling)

    return loop.run(start())


@pytest.fixture(scope="module")
def remotes(tiny_prms: dict[str, Path], tmp_path_factory) -> Iterator[dict[str, RunningServer]]:
    """Both `vllm serve` PRMs, launched before the in-process engines so they boot
    while those start; each test waits for the one it uses."""
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--served-model-name",
        "tiny-prm",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        *FLAGS,
    ]
    logs = tmp_path_factory.mktemp("prm-serve")
    servers = {
        "qwen": launch_server(
            command
            + [
                "--model",
                str(tiny_prms["qwen"]),
                "--pooler-config",
                f'{{"step_tag_id": {TAG_ID}}}',
            ],
            logs / "qwen.log",
        ),
        "token": launch_server(command + ["--model", str(tiny_prms["token"])], logs / "token.log"),
    }
    yield servers
    leftovers = [server.stop() for server in servers.values()]
    assert not any(leftovers), f"vllm serve left processes behind: {leftovers}"


@pytest.fixture(scope="module")
def qwen_local(loop: LoopThread, tiny_prms, remotes) -> Iterator[LocalPRMBackend]:
    backend = _local(loop, tiny_prms["qwen"], pooling=True)
    yield backend
    loop.run(backend.close())


@pytest.fixture(scope="module")
def token_local(loop: LoopThread, tiny_prms, remotes) -> Iterator[LocalPRMBackend]:
    backend = _local(loop, tiny_prms["token"], pooling=False)
    yield backend
    loop.run(backend.close())


@pytest.fixture(scope="module")
def qwen_server(remotes: dict[str, RunningServer]) -> RunningServer:
    return wait_healthy(remotes["qwen"], "/health")


@pytest.fixture(scope="module")
def token_server(remotes: dict[str, RunningServer]) -> RunningServer:
    return wait_healthy(remotes["token"], "/health")


def _score(loop: LoopThread, client: Any, solutions: list[list[str]]) -> list[list[float]]:
    async def call() -> list[list[float]]:
        return validate_scores(await client.score(QUESTION, solutions), solutions, client.name)

    return loop.run(call())


#: The same input scored twice (in a batch or alone, as a prefix or whole) agrees to
#: float32 rounding across batch shapes; a different input must score further apart
#: than ten times that, or "moved" could be rounding noise. Relative, because the
#: random-weight PRMs give probabilities of 1e-5 to 1e-4, below any useful absolute
#: tolerance.
SAME_REL = 1e-4
APART_REL = 10 * SAME_REL


def _same(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=SAME_REL, abs_tol=1e-12)


def _apart(x: float, y: float) -> bool:
    return abs(x - y) > APART_REL * max(abs(x), abs(y))


def _close(a: list[list[float]], b: list[list[float]]) -> bool:
    return [len(r) for r in a] == [len(r) for r in b] and all(
        _same(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)
    )


def _checks_alignment(loop: LoopThread, client: Any) -> None:
    """Shapes; prefixes score the same; a changed step moves only its own and later scores."""
    full = _score(loop, client, SOLUTIONS + [[]])
    assert [len(s) for s in full] == [3, 2, 1, 0]
    assert all(0 <= x <= 1 for row in full for x in row)
    firsts = sorted(row[0] for row in full[:3])  # three different first steps
    assert all(_apart(a, b) for a, b in zip(firsts, firsts[1:])), f"too close: {firsts}"
    steps = SOLUTIONS[0]
    prefixes = _score(loop, client, [steps[:1], steps[:2]])
    assert _close(prefixes, [full[0][:1], full[0][:2]])
    changed = _score(loop, client, [[steps[0], "3 * 4 = 13", steps[2]]])[0]
    assert _same(changed[0], full[0][0]), (changed, full[0])
    assert _apart(changed[1], full[0][1]), (changed, full[0])
    # Batch == single: each solution scored alone gives what the batch gave.
    singles = [_score(loop, client, [s])[0] for s in SOLUTIONS]
    assert _close(singles, full[:3])


def test_qwen_prm_in_process(loop: LoopThread, qwen_local: LocalPRMBackend) -> None:
    prm = QwenPRM(qwen_local)
    _checks_alignment(loop, prm)
    rows = loop.run(
        qwen_local.classify_steps(
            [loop.run(qwen_local.render_chat(_qwen_chat(SOLUTIONS[0]), False))], TAG_ID
        )
    )
    assert len(rows[0]) == 3 and all(
        len(r) == 2 and math.isclose(sum(r), 1, abs_tol=1e-5) for r in rows[0]
    )
    assert [r[1] for r in rows[0]] == pytest.approx(_score(loop, prm, SOLUTIONS[:1])[0])

    async def metered() -> int:
        with metering_reward_tokens() as tokens:
            await prm.score(QUESTION, SOLUTIONS)
        return tokens.count

    assert loop.run(metered()) > 3 * 20  # every rendered input's tokens are counted


def _qwen_chat(steps: list[str]):
    from reward_clients.prm_formats import qwen_prm_messages

    return qwen_prm_messages(QUESTION, steps)


def test_qwen_prm_refuses_a_step_containing_the_tag(loop, qwen_local) -> None:
    with pytest.raises(RewardError, match="2 steps but its PRM input has 3 step tags"):
        _score(loop, QwenPRM(qwen_local), [["a <extra_0> b", "c"]])


def test_qwen_prm_remote_equals_in_process(loop, qwen_local, qwen_server) -> None:
    remote = QwenPRM(RemotePRMBackend(qwen_server.url, timeout_s=60))
    local = _score(loop, QwenPRM(qwen_local), SOLUTIONS)
    assert _close(_score(loop, remote, SOLUTIONS), local)
    loop.run(remote.backend.close())


def test_qwen_prm_remote_with_another_step_tag_is_an_error(loop, qwen_server) -> None:
    """A server whose pooler tag is not the tokenizer's `<extra_0>` must not pass."""
    remote = RemotePRMBackend(qwen_server.url, timeout_s=60)

    async def with_wrong_tag() -> None:
        prompt = await remote.render_chat(_qwen_chat(["a", "b"]), False)
        rows = await remote.classify_steps([prompt], TAG_ID)
        assert len(rows[0]) == 2  # the right tag: two rows
        prm = QwenPRM(remote)
        prm._tag_id = TAG_ID - 1  # as if the tokenizer's tag were another token
        await prm.score(QUESTION, [["a", "b"]])

    with pytest.raises(RewardError, match="0 step tags"):
        loop.run(with_wrong_tag())
    loop.run(remote.close())


@pytest.mark.parametrize("fmt", ["math-shepherd", "rlhflow"])
def test_token_logit_prm_in_process(loop, token_local, fmt: str) -> None:
    _checks_alignment(loop, TokenLogitPRM(token_local, fmt))


def test_math_shepherd_reads_plus_minus_at_each_tag(loop, token_local) -> None:
    """The client's score is P(+)/(P(+)+P(-)) of the token after each `ки`."""
    steps = SOLUTIONS[1]
    ids = loop.run(token_local.encode(math_shepherd_text(QUESTION, steps), True))
    tags = [i for i, t in enumerate(ids) if t == TAG_ID]
    plus, minus = (loop.run(token_local.encode(s, False))[-1] for s in "+-")
    reads = loop.run(token_local.label_logprobs([ids[: t + 1] for t in tags], [plus, minus]))
    assert len(reads) == 2
    for good, bad in reads:
        assert good < 0 and bad < 0 and math.exp(good) + math.exp(bad) < 1
    expected = [math.exp(g) / (math.exp(g) + math.exp(b)) for g, b in reads]
    assert _score(loop, TokenLogitPRM(token_local, "math-shepherd"), [steps])[0] == pytest.approx(
        expected, abs=1e-6
    )


@pytest.mark.parametrize("fmt", ["math-shepherd", "rlhflow"])
def test_token_logit_prm_remote_equals_in_process(loop, token_local, token_server, fmt) -> None:
    remote = TokenLogitPRM(RemotePRMBackend(token_server.url, timeout_s=60), fmt)
    assert _close(
        _score(loop, remote, SOLUTIONS), _score(loop, TokenLogitPRM(token_local, fmt), SOLUTIONS)
    )
    loop.run(remote.backend.close())


def test_math_shepherd_refuses_a_step_containing_the_tag(loop, token_local) -> None:
    with pytest.raises(RewardError, match="2 steps but its PRM input has 3 step tags"):
        _score(loop, TokenLogitPRM(token_local, "math-shepherd"), [["a ки b", "c"]])
