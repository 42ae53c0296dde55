"""What Ponder's per-request extras cost in decoding: the sampled tokens' logprobs
(every search reads them), top-5 alternatives (judges), and a stop string (every step
search stops at its step delimiter).

One in-process engine (the embedded model, as `decode_speed.py` starts it), raw vLLM
`SamplingParams` so each extra can be switched off alone; `ignore_eos` and a stop
string that never occurs keep every sample at `--max-new-tokens`, so each setting
decodes exactly the same number of tokens and only the extra's own work differs.
The settings alternate within each round; medians over the rounds.

    python benchmarks/bench_request_options.py [--runs 3] [--n 8] [--max-new-tokens 128]

The token ids come back with every in-process output (they are the engine's output,
not an extra); a remote server's `return_token_ids` is its HTTP form and is not
measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from decode_speed import PROMPT, embedded_engine

from server.policy.vllm_engine import engine_args

#: Never in the model's output, so checking it costs its work and ends nothing.
ABSENT_STOP = "<<ponder-bench-absent>>"

#: Name -> the SamplingParams fields it sets on top of the bare request.
SETTINGS: dict[str, dict[str, Any]] = {
    "bare": {},
    "sampled logprobs (Ponder's)": {"logprobs": 0},
    "top-5 logprobs": {"logprobs": 5},
    "stop string": {"stop": [ABSENT_STOP], "include_stop_str_in_output": True},
    "logprobs + stop (a step search's call)": {
        "logprobs": 0,
        "stop": [ABSENT_STOP],
        "include_stop_str_in_output": True,
    },
}


async def rates(runs: int, n: int, max_new_tokens: int) -> dict[str, float]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    engine = AsyncLLM.from_engine_args(engine_args(embedded_engine()))
    try:
        tokenizer = engine.get_tokenizer()
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
        )
        prompt = TokensPrompt(prompt_token_ids=tokenizer.encode(text, add_special_tokens=False))

        async def tokens_per_second(count: int, **extra: Any) -> float:
            sampling = SamplingParams(
                n=count,
                max_tokens=max_new_tokens,
                temperature=0.8,
                top_p=1.0,
                ignore_eos=True,
                output_kind=RequestOutputKind.FINAL_ONLY,
                **extra,
            )
            started = time.perf_counter()
            final = None
            async for output in engine.generate(prompt, sampling, request_id=uuid.uuid4().hex):
                final = output
            assert final is not None
            generated = sum(len(sample.token_ids) for sample in final.outputs)
            return generated / (time.perf_counter() - started)

        await tokens_per_second(1)  # warm-up
        seen: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(runs):
            for name, extra in SETTINGS.items():
                seen[name].append(await tokens_per_second(n, **extra))
        return {name: statistics.median(values) for name, values in seen.items()}
    finally:
        engine.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n", type=int, default=8, help="samples per request")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()
    measured = asyncio.run(rates(args.runs, args.n, args.max_new_tokens))
    bare = measured["bare"]
    print(f"n={args.n}, {args.max_new_tokens} tokens each, medians of {args.runs}")
    print("| request | tokens/s | vs bare |")
    print("|---|---|---|")
    for name, rate in measured.items():
        print(f"| {name} | {rate:.1f} | {rate / bare:.2f}x |")


if __name__ == "__main__":
    main()
