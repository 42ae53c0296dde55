"""Reward throughput: one batched `score` call vs the same solutions one at a time.

For each client, 64 solutions x 6 steps are scored (a) in ONE `score` call, which
the vLLM-backed clients turn into one engine batch, and (b) one solution per call,
64 calls in a row, as a strategy that scores candidates as they come would do. Each
timed run scores fresh solutions, so neither mode reads the other's prefix cache.
Steps scored per second are reported for both, with the speed-up. For the
self-judge it also measures the policy engine's prefill rate with one prompt per
call and with 64 in one call: if they are close, the machine is compute-bound and
batching cannot multiply throughput.

    python benchmarks/bench_rewards.py [--solutions 64] [--steps 6] [--runs 2] [--only NAME ...]

Clients: `arithmetic` (no model), `self-judge` on the embedded SmolLM2-135M policy,
and the three learned-PRM formats on tiny random-weight stand-ins built as the tests
build them (`server.testing.tiny_models`: real architectures and vLLM code paths,
2 layers, hidden 128):
`qwen` (pooling runner), `math-shepherd` and `rlhflow` (label logprobs). There are
no real PRM weights on this machine; the stand-ins measure Ponder's batching and
vLLM's per-request overhead, not a 7B model's compute. Engines run in-process, one
client at a time, with `--enforce-eager`-like settings.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.learned_prm import QwenPRM, TokenLogitPRM
from reward_clients.self_judge import SelfJudge
from search_strategies.protocols import ChatMessage, SamplingConfig
from search_strategies.reward import RewardModel
from server.model_prep import EMBEDDED_MODEL_NAME, prepare_embedded_model
from server.policy.vllm_engine import EngineOptions, VLLMPolicy
from server.prm.vllm_local import LocalPRMBackend
from server.testing.tiny_models import build_tiny_qwen_prm, build_tiny_token_prm

QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"
CLIENTS = ("arithmetic", "self-judge", "qwen", "math-shepherd", "rlhflow")


def make_solutions(count: int, steps: int, seed: int = 0) -> list[list[str]]:
    """Distinct word-problem steps (a few true, a few false claims) per solution."""
    rng = random.Random(seed)
    solutions = []
    for _ in range(count):
        solution = []
        for k in range(steps):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            claimed = a * b + rng.choice([0, 0, 1, -1])
            solution.append(
                f"Step {k + 1}: there are {a} groups of {b}, so {a} * {b} = "
                f"{claimed} items in this part of the problem."
            )
        solutions.append(solution)
    return solutions


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def measure(
    reward: RewardModel, solutions: int, steps: int, runs: int
) -> tuple[float, float]:
    """Median seconds for (one batched call, one call per solution).

    Every timed run scores a fresh set of solutions, so neither mode reads prefixes
    the other left in the engine's prefix cache (the question itself is shared by
    all, as in a real search)."""
    await reward.score(QUESTION, make_solutions(2, steps, seed=0))  # warm-up

    async def one_at_a_time(batch: list[list[str]]) -> None:
        for solution in batch:
            await reward.score(QUESTION, [solution])

    batched, single = [], []
    for run in range(runs):  # alternate so machine noise hits both alike
        fresh = make_solutions(solutions, steps, seed=2 * run + 1)
        batched.append(await timed(partial(reward.score, QUESTION, fresh)))
        fresh = make_solutions(solutions, steps, seed=2 * run + 2)
        single.append(await timed(partial(one_at_a_time, fresh)))
    return statistics.median(batched), statistics.median(single)


async def prefill_scaling(policy: VLLMPolicy, prompts: int) -> tuple[float, float]:
    """Prompt tokens/s of the policy engine: `prompts` distinct prompts one per call,
    and the same number of other distinct prompts in one call (nothing cached).

    If one call is not much faster per token, the machine is compute-bound and no
    batching can multiply reward throughput; only fewer prefill tokens can."""

    def distinct(offset: int) -> list[str]:
        return [
            f"Problem {offset + i}: " + " ".join(make_solutions(1, 6, seed=offset + i)[0])
            for i in range(prompts)
        ]

    async def encode(texts: list[str]) -> list[list[int]]:
        return [await policy.encode_chat([ChatMessage("user", t)]) for t in texts]

    one_token = SamplingConfig(n=1, max_tokens=1, temperature=0.0)
    singles, batch = await encode(distinct(10_000)), await encode(distinct(20_000))
    started = time.perf_counter()
    for prompt in singles:
        await policy.generate([prompt], one_token)
    single_rate = sum(map(len, singles)) / (time.perf_counter() - started)
    started = time.perf_counter()
    await policy.generate(batch, one_token)
    batched_rate = sum(map(len, batch)) / (time.perf_counter() - started)
    return batched_rate, single_rate


def engine(model: Path | str, memory: float) -> EngineOptions:
    return EngineOptions(
        model=str(model),
        served_model_name=EMBEDDED_MODEL_NAME,
        max_model_len=2048,
        gpu_memory_utilization=memory,
        enforce_eager=True,
        block_size=32,
    )


async def open_client(
    name: str, models: dict[str, Path], open_backends: dict[str, Any]
) -> RewardModel:
    """The client; engines it starts are kept in `open_backends` (the two token-logit
    formats share one) and closed by the caller."""
    if name == "arithmetic":
        return ArithmeticVerifier()
    if name == "self-judge":
        open_backends["policy"] = VLLMPolicy.start(engine(prepare_embedded_model(), 0.2))
        return SelfJudge(open_backends["policy"])
    key = "qwen" if name == "qwen" else "token"
    if key not in open_backends:
        open_backends[key] = LocalPRMBackend.start(engine(models[key], 0.1), key == "qwen")
    if key == "qwen":
        return QwenPRM(open_backends[key])
    return TokenLogitPRM(open_backends[key], name)  # type: ignore[arg-type]


async def main(args: argparse.Namespace) -> None:
    steps = args.solutions * args.steps
    root = Path(tempfile.mkdtemp(prefix="ponder-bench-prms-"))
    embedded = prepare_embedded_model()
    models = {
        "qwen": build_tiny_qwen_prm(embedded, root / "qwen"),
        "token": build_tiny_token_prm(embedded, root / "token"),
    }
    rows = []
    open_backends: dict[str, Any] = {}
    try:
        for name in args.only or CLIENTS:
            reward = await open_client(name, models, open_backends)
            batched, single = await measure(reward, args.solutions, args.steps, args.runs)
            rows.append((name, batched, single))
            print(f"{name}: batched {batched:.2f} s, one at a time {single:.2f} s", flush=True)
            if name == "self-judge":
                prefill = await prefill_scaling(open_backends["policy"], args.solutions)
                print(
                    f"policy prefill: {prefill[0]:,.0f} tokens/s with {args.solutions} "
                    f"prompts in one call, {prefill[1]:,.0f} tokens/s one per call",
                    flush=True,
                )
            for key in [k for k in open_backends if k != "token" or name == "rlhflow"]:
                await open_backends.pop(key).close()  # one engine at a time
    finally:
        for backend in open_backends.values():
            await backend.close()
    print(
        f"\n{args.solutions} solutions x {args.steps} steps = {steps} steps; "
        f"median of {args.runs} runs\n"
    )
    print(
        "| client | batched: 1 call | one solution per call: "
        f"{args.solutions} calls | batched steps/s | one-at-a-time steps/s | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    for name, batched, single in rows:
        print(
            f"| {name} | {batched:.2f} s | {single:.2f} s | {steps / batched:,.0f} | "
            f"{steps / single:,.0f} | {single / batched:.1f}x |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solutions", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=CLIENTS)
    asyncio.run(main(parser.parse_args()))
