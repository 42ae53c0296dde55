"""What nucleus sampling costs: generated tokens/s at top_p 1.0 against top_p < 1.

One in-process engine (the embedded model, as `decode_speed.py` starts it); the
settings alternate within each round, so machine noise hits both alike; medians over
the rounds. Nucleus sampling sorts the vocabulary (49k tokens here) for every sampled
token, which a CPU pays in full.

    python benchmarks/bench_sampling.py [--runs 3] [--max-new-tokens 128] [--top-p 0.95]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from decode_speed import PROMPT, embedded_engine, tokens_per_second

from search_strategies.protocols import ChatMessage, SamplingConfig
from server.policy.vllm_engine import VLLMPolicy

SAMPLES = (1, 8, 16)


async def rates(runs: int, max_new_tokens: int, top_ps: tuple[float, ...]) -> dict:
    policy = VLLMPolicy.start(embedded_engine())
    try:
        prompt = await policy.encode_chat([ChatMessage("user", PROMPT)])
        await policy.generate([prompt], SamplingConfig(n=1, max_tokens=8))  # warm-up
        seen: dict[tuple[int, float], list[float]] = {(n, p): [] for n in SAMPLES for p in top_ps}
        for _ in range(runs):
            for n in SAMPLES:
                for top_p in top_ps:
                    config = SamplingConfig(
                        n=n, max_tokens=max_new_tokens, temperature=0.8, top_p=top_p
                    )
                    seen[n, top_p].append(await tokens_per_second(policy, prompt, config))
        return {key: statistics.median(values) for key, values in seen.items()}
    finally:
        await policy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--top-p", type=float, default=0.95, help="the nucleus to compare")
    args = parser.parse_args()
    top_ps = (1.0, args.top_p)
    measured = asyncio.run(rates(args.runs, args.max_new_tokens, top_ps))
    nucleus_name = f"top_p {args.top_p}"
    print(f"| samples | top_p 1.0 (tokens/s) | {nucleus_name} (tokens/s) | ratio |")
    print("|---|---|---|---|")
    for n in SAMPLES:
        full, nucleus = measured[n, 1.0], measured[n, args.top_p]
        print(f"| n={n} | {full:.1f} | {nucleus:.1f} | {full / nucleus:.2f}x |")


if __name__ == "__main__":
    main()
