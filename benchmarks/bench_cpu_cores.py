"""Decode speed of the embedded model with vLLM's default CPU binding vs all cores.

vLLM's CPU build reserves one core for its scheduler and computes on the others;
Ponder binds all cores instead on machines with at most four
(`server.policy.vllm_engine.bind_all_cores_on_small_cpus`). This measures what that
buys: the same engine started twice, once with `VLLM_CPU_OMP_THREADS_BIND=auto`
(vLLM's default) and once with Ponder's choice, each decoding `--max-new-tokens`
tokens per sample at n=1 and at n=16 (temperature 1, top_p 0.95, as searches
sample), medians of `--runs`.

    python benchmarks/bench_cpu_cores.py [--runs 3] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os

from decode_speed import decode_rates, embedded_engine, print_comparison


async def tokens_per_second(binding: str, runs: int, max_new_tokens: int) -> dict[int, float]:
    """Median generated tokens/s per n, for an engine started under `binding`."""
    os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
    if binding == "auto":  # a user's setting wins over Ponder's
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "auto"
    # else: starting the engine applies `bind_all_cores_on_small_cpus`
    return await decode_rates(embedded_engine(), runs, max_new_tokens)


async def main(args: argparse.Namespace) -> None:
    results = {}
    for binding in ("auto", "ponder"):
        results[binding] = await tokens_per_second(binding, args.runs, args.max_new_tokens)
        print(binding, {n: round(rate, 1) for n, rate in results[binding].items()}, flush=True)
    ours = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
    print(
        f"\ncores: {sorted(os.sched_getaffinity(0))}; Ponder's binding: {ours!r}; "
        f"medians of {args.runs}\n"
    )
    print_comparison(("vLLM default", results["auto"]), ("Ponder", results["ponder"]), "speed-up")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
