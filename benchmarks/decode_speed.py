"""Decode speed of one in-process engine: the measurement the CPU benchmarks share.

`bench_cpu_cores.py` (core binding) and `bench_dtype.py` (bf16 vs
float32) start the same engine under two settings and compare generated tokens/s
at n=1 and at n=16; this is that measurement, so both report the same figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from search_strategies.protocols import ChatMessage, SamplingConfig
from server.model_prep import EMBEDDED_MODEL_NAME, prepare_embedded_model
from server.policy.vllm_engine import EngineOptions, VLLMPolicy

PROMPT = "Write a long story about a dragon who learns arithmetic."
SAMPLES = (1, 16)


def embedded_engine(**overrides: object) -> EngineOptions:
    """The embedded model with the small-machine settings the benchmarks use."""
    settings = dict(
        model=str(prepare_embedded_model()),
        served_model_name=EMBEDDED_MODEL_NAME,
        max_model_len=2048,
        gpu_memory_utilization=0.2,
        enforce_eager=True,
    )
    return EngineOptions(**{**settings, **overrides})


async def decode_rates(
    options: EngineOptions,
    runs: int,
    max_new_tokens: int,
    samples: Sequence[int] = SAMPLES,
    top_p: float = 0.95,
) -> dict[int, float]:
    """Median generated tokens/s per n (temperature 1, as searches sample), over `runs`
    rounds that alternate the n values; the engine is started here and closed after."""
    policy = VLLMPolicy.start(options)
    try:
        prompt = await policy.encode_chat([ChatMessage("user", PROMPT)])
        await policy.generate([prompt], SamplingConfig(n=1, max_tokens=8))  # warm-up
        rates: dict[int, list[float]] = {n: [] for n in samples}
        for _ in range(runs):
            for n in samples:
                config = SamplingConfig(
                    n=n, max_tokens=max_new_tokens, temperature=1.0, top_p=top_p
                )
                rates[n].append(await tokens_per_second(policy, prompt, config))
        return {n: statistics.median(values) for n, values in rates.items()}
    finally:
        await policy.close()


async def tokens_per_second(policy: VLLMPolicy, prompt: list[int], config: SamplingConfig) -> float:
    """Generated tokens/s of one call: every sample's tokens over its wall time."""
    started = time.perf_counter()
    generation = (await policy.generate([prompt], config))[0]
    tokens = sum(c.num_tokens for c in generation.completions)
    return tokens / (time.perf_counter() - started)


def print_comparison(
    before: tuple[str, dict[int, float]], after: tuple[str, dict[int, float]], ratio: str
) -> None:
    """A Markdown table of two settings' tokens/s per n and their ratio (after / before)."""
    (name_a, rates_a), (name_b, rates_b) = before, after
    print(f"| samples | {name_a} (tokens/s) | {name_b} (tokens/s) | {ratio} |")
    print("|---|---|---|---|")
    for n in rates_a:
        print(f"| n={n} | {rates_a[n]:.1f} | {rates_b[n]:.1f} | {rates_b[n] / rates_a[n]:.2f}x |")
