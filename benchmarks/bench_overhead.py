"""How much does Ponder's HTTP + search layer cost over calling vLLM directly?

Best-of-16 through `POST /v1/solve` on a live `ponder serve`, against the same
`SamplingParams` (same prompt ids, same seed) sent straight to an in-process
`AsyncLLM` built with the same engine arguments. Runs alternate so that machine
noise hits both sides alike; medians are reported.

    python benchmarks/bench_overhead.py [--runs 5] [--n 16] [--max-new-tokens 64] [--direct-first]

Both engines live on this machine at once; the order they start in decides how vLLM
pins their threads, which shifted the ratio by a few percent here. `--direct-first`
swaps the order; run both and compare. "Ponder layer" (HTTP wall minus the server's
own search time) isolates what Ponder adds on top of its engine calls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from search_strategies.protocols import SamplingConfig
from server.model_prep import EMBEDDED_MODEL_NAME, prepare_embedded_model
from server.policy.vllm_engine import (
    EngineOptions,
    engine_args,
    sampling_params,
)
from server.settings import DEFAULT_SYSTEM_PROMPT

REPO = Path(__file__).resolve().parent.parent

QUESTION = "Sam has 3 bags with 4 marbles in each bag. How many marbles does Sam have?"
ENGINE = dict(enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=2048)


def start_server(model: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--policy",
        str(model),
        "--served-model-name",
        EMBEDDED_MODEL_NAME,
        "--port",
        str(port),
        "--enforce-eager",
        "--gpu-memory-utilization",
        "0.2",
        "--max-model-len",
        "2048",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(1)
    process.kill()
    raise SystemExit("ponder serve did not become healthy")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--direct-first", action="store_true", help="start the in-process engine before the server"
    )
    args = parser.parse_args()

    from vllm.inputs import TokensPrompt
    from vllm.v1.engine.async_llm import AsyncLLM

    model = prepare_embedded_model()
    options = EngineOptions(model=str(model), served_model_name="direct", **ENGINE)
    if args.direct_first:
        engine = AsyncLLM.from_engine_args(engine_args(options))
        server = start_server(model, args.port)
    else:
        server = start_server(model, args.port)
        engine = AsyncLLM.from_engine_args(engine_args(options))
    try:
        tokenizer = engine.get_tokenizer()
        text = tokenizer.apply_chat_template(
            [
                {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
                {"role": "user", "content": QUESTION},
            ],
            tokenize=False,
            add_generation_prompt=True,
        )
        prompt = tokenizer.encode(text, add_special_tokens=False)
        params = sampling_params(
            SamplingConfig(n=args.n, max_tokens=args.max_new_tokens, seed=args.seed)
        )
        request = {
            "question": QUESTION,
            "n": args.n,
            "max_new_tokens": args.max_new_tokens,
            "seed": args.seed,
        }

        async def direct() -> tuple[float, int]:
            started = time.perf_counter()
            async for output in engine.generate(
                TokensPrompt(prompt_token_ids=prompt), params, request_id=f"d{time.time()}"
            ):
                final = output
            return time.perf_counter() - started, sum(len(o.token_ids) for o in final.outputs)

        async def over_http() -> tuple[float, int]:
            started = time.perf_counter()
            response = await http.post("/v1/solve", json=request)
            response.raise_for_status()
            answer = response.json()
            inside.append(answer["timing"]["search_s"])
            return time.perf_counter() - started, answer["usage"]["generated_tokens"]

        times: dict[str, list[float]] = {"http": [], "direct": []}
        inside: list[float] = []  # the server's own search time, engine calls included
        tokens = set()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{args.port}", timeout=600) as http:
            await over_http()  # warm both sides once
            await direct()
            for run in range(args.runs):
                order = [("http", over_http), ("direct", direct)]
                for label, measure in order if run % 2 == 0 else reversed(order):
                    seconds, generated = await measure()
                    times[label].append(seconds)
                    tokens.add((label, generated))
                    print(f"run {run} {label:6s} {seconds:7.2f} s  {generated} tokens", flush=True)
        http_median, direct_median = (
            statistics.median(times["http"]),
            statistics.median(times["direct"]),
        )
        print(
            f"\nmodel {EMBEDDED_MODEL_NAME}, n={args.n}, max_new_tokens={args.max_new_tokens}, "
            f"runs={args.runs}, direct_first={args.direct_first}, "
            f"tokens per run {sorted(tokens)}"
        )
        print(
            f"| path | median wall (s) |\n|---|---|\n| Ponder HTTP /v1/solve | "
            f"{http_median:.2f} |\n| direct AsyncLLM | {direct_median:.2f} |"
        )
        layer = statistics.median(w - s for w, s in zip(times["http"], inside[1:]))
        print(f"Ponder layer (HTTP wall - server search time), median: {layer * 1000:.1f} ms")
        print(f"ratio http/direct = {http_median / direct_median:.3f} (target <= 1.05)")
    finally:
        engine.shutdown()
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    asyncio.run(main())
