"""Decode speed of the embedded model in float32 vs bfloat16, and what `auto` picks.

`--dtype auto` resolves to bf16 on CPUs with AVX-512-BF16 or AMX and on GPUs, and to
float32 on other CPUs, where bf16 is emulated (`server.policy.vllm_engine.resolve_dtype`).
The dtype also decides reproducibility (docs/reproducibility.md: bit-identical
repeats in float32 only), so a user choosing `--dtype float32` for exact reruns
needs to know its price on their CPU. This starts the engine once per dtype and
reports generated tokens/s at n=1 and n=16, medians of `--runs`.

    python benchmarks/bench_dtype.py [--runs 3] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
from pathlib import Path

from decode_speed import decode_rates, embedded_engine, print_comparison

from server.policy.vllm_engine import resolve_dtype

DTYPES = ("float32", "bfloat16")


def cpu_description() -> str:
    """The CPU's model name and which bf16 instructions it has."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    found = [flag for flag in ("avx512_bf16", "amx_bf16", "avx512f", "avx2") if flag in info]
    return f"{model} ({', '.join(found) or 'no AVX'})"


async def main(args: argparse.Namespace) -> None:
    results = {}
    for dtype in DTYPES:
        options = embedded_engine(dtype=dtype)
        results[dtype] = await decode_rates(options, args.runs, args.max_new_tokens)
        print(dtype, {n: round(rate, 1) for n, rate in results[dtype].items()}, flush=True)
    print(
        f"\nCPU: {cpu_description()}; `--dtype auto` picks {resolve_dtype('auto')}; "
        f"{args.max_new_tokens} new tokens, medians of {args.runs}\n"
    )
    print_comparison(
        ("float32", results["float32"]), ("bfloat16", results["bfloat16"]), "bf16 / float32"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    asyncio.run(main(parser.parse_args()))
