"""Self-consistency over 8 samples through Ponder, its_hub and optillm, on one vLLM server.

Three clients, one after another, send the same questions to ONE shared
OpenAI-compatible `vllm serve` of the embedded model, with the same sampling
(temperature 0.8, top_p 1.0, at most 256 new tokens per sample, 8 samples) and the
same system prompt (Ponder's default), and each picks an answer by majority vote:

- `ponder`: `POST /v1/solve` on a `ponder serve --policy-url` pointing at that vLLM,
  strategy `best_of_n`, n=8, selection `majority` (one `/v1/completions` call, n=8);
- `its_hub`: `its_hub.SelfConsistency` with an `OpenAICompatibleLanguageModel`
  (8 concurrent `/v1/chat/completions` calls of one sample each, its default
  orchestrator) and its regex projection on `\\boxed{...}` for the vote;
- `optillm`: optillm's self-consistency approach used as a library
  (`optillm.self_consistency.AdvancedSelfConsistency`, num_samples=8, through an
  `openai.OpenAI` client): 8 `/v1/chat/completions` calls ONE AFTER ANOTHER (that is
  how optillm samples), answer = the largest cluster of similar texts.

The metric is generated tokens per second per client: generated tokens read from
vLLM's own counter (`vllm:generation_tokens_total` on its /metrics, before and after
each client, so every client is counted the same way) over the client's wall
seconds (the sum of its per-question times; process start and imports excluded).
Also: HTTP calls to vLLM (as each client counts them), the tokens the client itself
reported (a cross-check), and accuracy (the chosen text's final answer, extracted
the same way for all, graded with clients/bench/grading.py).

Setup (once): the peers live in their own venv, installed without their declared
dependencies (optillm's pull CUDA torch, transformers, gradio, spacy...; the client
paths used here need only these):

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install --no-deps its_hub==1.2.0 optillm==0.4.0
    /work/peers-venv/bin/pip install numpy 'typing-extensions>=4.12.2' 'openai>=1.68.2' \
        'aiohttp>=3.9.0' 'backoff>=2.2.0' 'certifi>=2026.2.25' requests flask \
        cerebras_cloud_sdk networkx 'z3-solver<=4.15.4.0' sympy math-verify PyYAML

(its_hub's client is its `[lm]` extra; optillm's package `__init__` imports its
whole proxy server, hence flask, cerebras, z3... even for the library call.)

Run (the project's venv; the peers run in a subprocess: this file again, in the
peers' venv, with the argument `peer`):

    MODEL=$(.venv/bin/ponder prepare-model)
    VLLM_SERVER_DEV_MODE=1 .venv/bin/python -m vllm.entrypoints.openai.api_server \
        --model "$MODEL" --served-model-name smollm2-135m-instruct \
        --host 127.0.0.1 --port 8001 --dtype float32 --block-size 32 --enforce-eager \
        --max-model-len 4096 --gpu-memory-utilization 0.2 --generation-config vllm \
        --no-enable-chunked-prefill --max-num-batched-tokens 8192 &
    .venv/bin/ponder serve --policy-url http://127.0.0.1:8001/v1 --reward none \
        --port 8123 &
    .venv/bin/python benchmarks/bench_peers.py --vllm http://127.0.0.1:8001 \
        --ponder http://127.0.0.1:8123 --peers-python /work/peers-venv/bin/python \
        --problems 8 [--clients ponder,its_hub,optillm] [--json out.json]

`VLLM_SERVER_DEV_MODE=1` opens vLLM's `POST /reset_prefix_cache`, called before
each client so none reads the prompts another one left in the prefix cache
(without it the script says so and goes on). `--generation-config vllm`: a
parameter a client does not send (its_hub and optillm send no top_p) takes vLLM's
default (top_p 1.0), not the model folder's.

Differences the libraries impose (printed under the table):
- its_hub sends no top_p (vLLM's default, 1.0, applies) and votes on the first
  `\\boxed{}` of each sample: samples without one vote together as "no answer".
- optillm hard-codes temperature 1 and sends no top_p; the client wrapper here sets
  temperature 0.8 and top_p 1.0 on every call (`--optillm-native` leaves optillm's
  temperature 1). It drops samples cut at max_tokens from the vote (they still count
  as generated tokens), and votes on text similarity (difflib ratio >= 0.8), not on
  answers.
- Ponder sends no seed unless `--seed` is given (the peers send none).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# Only the standard library at the top: the `peer` half of this file runs in the
# peers' venv, which has neither the project nor httpx-based helpers of its own.
# The project half imports what it needs inside its functions.

CLIENTS = ("ponder", "its_hub", "optillm")
PEERS = ("its_hub", "optillm")
#: How each client samples and votes (the table's "how" column).
HOW = {
    "ponder": "best_of_n majority: 1 completions call, n=8",
    "its_hub": "SelfConsistency: 8 concurrent chat calls, n=1, vote on \\boxed{}",
    "optillm": "AdvancedSelfConsistency: 8 sequential chat calls, similarity clusters",
}
#: its_hub's documented projection for math answers (first `\boxed{...}`).
BOXED_PATTERN = r"\\boxed\{([^{}]*)\}"
PEER_MODE = "peer"


# --- The peers' half: runs in the peers' venv (stdlib + its_hub / optillm) --------


def run_peer(name: str) -> None:
    """Read a job (JSON) on stdin, answer its questions one at a time, print one JSON
    line per question on stdout, then one line with the package versions."""
    job = json.load(sys.stdin)
    runner = {"its_hub": _its_hub_runner, "optillm": _optillm_runner}[name](job)
    for index, question in enumerate(job["questions"]):
        started = time.perf_counter()
        answer = runner(question)
        seconds = time.perf_counter() - started
        print(json.dumps({"index": index, "seconds": seconds, **answer}), flush=True)
    packages = [name, "openai"] + (["aiohttp"] if name == "its_hub" else [])
    print(json.dumps({"versions": {p: version(p) for p in packages}}), flush=True)


def _its_hub_runner(job: dict[str, Any]) -> Any:
    from its_hub import OpenAICompatibleLanguageModel, SelfConsistency
    from its_hub.core.algorithms.self_consistency import create_regex_projection_function

    lm = OpenAICompatibleLanguageModel(
        endpoint=job["base_url"],
        api_key="none",
        model_name=job["model"],
        system_prompt=job["system_prompt"],
        max_completion_tokens=job["max_tokens"],
        temperature=job["temperature"],
    )
    algorithm = SelfConsistency(create_regex_projection_function(BOXED_PATTERN))

    def solve(question: str) -> dict[str, Any]:
        result = algorithm.infer(lm, question, budget=job["n"], return_response_only=False)
        return {
            "text": result.the_one.get("content") or "",
            "samples": len(result.responses),
            "calls": result.usage.num_calls,
            "client_tokens": result.usage.completion_tokens,
        }

    return solve


class _SamplingCompletions:
    """`client.chat.completions` that sets our sampling on every call (optillm
    hard-codes temperature 1) and counts every sample's tokens (optillm's own count
    leaves out the samples it drops)."""

    def __init__(self, inner: Any, overrides: dict[str, Any]) -> None:
        self._inner = inner
        self._overrides = overrides
        self.tokens = 0
        self.calls = 0

    def create(self, **kwargs: Any) -> Any:
        response = self._inner.create(**{**kwargs, **self._overrides})
        self.calls += 1
        self.tokens += response.usage.completion_tokens if response.usage else 0
        return response


def _optillm_runner(job: dict[str, Any]) -> Any:
    import logging

    from openai import OpenAI
    from optillm.self_consistency import AdvancedSelfConsistency

    # Importing optillm sets INFO logging, and httpx then logs every sample's request.
    for name in ("httpx", "httpx2"):  # openai's HTTP client (httpx2 from openai 3 on)
        logging.getLogger(name).setLevel(logging.WARNING)
    openai_client = OpenAI(base_url=job["base_url"], api_key="none", timeout=job["timeout"])
    overrides = {"temperature": job["temperature"], "top_p": job["top_p"]}
    if job["optillm_native"]:
        overrides = {}
    completions = _SamplingCompletions(openai_client.chat.completions, overrides)
    client = SimpleNamespace(chat=SimpleNamespace(completions=completions))

    def solve(question: str) -> dict[str, Any]:
        tokens, calls = completions.tokens, completions.calls
        consistency = AdvancedSelfConsistency(
            client, job["model"], num_samples=job["n"],
            request_config={"max_tokens": job["max_tokens"]},
        )  # fmt: skip
        result = consistency.evaluate(job["system_prompt"], question)
        clusters = result["aggregated_result"]["clusters"]
        return {
            # optillm's own answer when no sample survived: "No consistent answer found."
            "text": clusters[0]["answer"] if clusters else "",
            "samples": completions.calls - calls,  # one sample per call
            "calls": completions.calls - calls,
            "client_tokens": completions.tokens - tokens,
        }

    return solve


# --- The project's half: runs in the project's venv -------------------------------


@dataclass
class ClientRun:
    """One client's measurements over the problems."""

    name: str
    versions: dict[str, str] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    samples: int = 0
    #: HTTP calls the client made to vLLM (as the client counts them).
    calls: int = 0
    client_tokens: int = 0
    generated_tokens: int = 0  # vLLM's counter
    prompt_tokens: int = 0  # vLLM's counter
    #: vLLM's finished requests; a call with n=8 finishes 8 (one per sample).
    engine_requests: int = 0
    correct: int = 0
    cache_reset: bool = False

    @property
    def wall_s(self) -> float:
        return sum(self.seconds)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s else 0.0


def vllm_counters(client: Any) -> dict[str, float]:
    """vLLM's counters summed over their labels: generated and prompt tokens, finished
    requests."""
    wanted = {
        "vllm:generation_tokens_total": "generated",
        "vllm:prompt_tokens_total": "prompt",
        "vllm:request_success_total": "requests",
    }
    totals = dict.fromkeys(wanted.values(), 0.0)
    for line in client.get("/metrics").text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            totals[wanted[name]] += float(line.rsplit(" ", 1)[1])
    return totals


def settled_counters(client: Any) -> dict[str, float]:
    """The counters once two reads a moment apart agree (the engine's last stats may
    land just after the last response)."""
    last = vllm_counters(client)
    for _ in range(20):
        time.sleep(0.5)
        now = vllm_counters(client)
        if now == last:
            return now
        last = now
    return last


def reset_prefix_cache(client: Any) -> bool:
    """Empty vLLM's prefix cache (needs VLLM_SERVER_DEV_MODE=1 on the server)."""
    response = client.post("/reset_prefix_cache")
    return response.status_code == 200 and response.json().get("success", True) is not False


def run_ponder(args: argparse.Namespace, questions: list[str], system_prompt: str) -> ClientRun:
    import httpx

    run = ClientRun("ponder", versions={"ponder": f"{version('ponder')} ({git_revision()})"})
    with httpx.Client(base_url=args.ponder, timeout=args.timeout) as client:
        for index, question in enumerate(questions):
            body = {
                "question": question,
                "system_prompt": system_prompt,
                "strategy": "best_of_n",
                "selection": "majority",
                "n": args.n,
                "temperature": args.temperature,
                "top_p": args.top_p,
                "max_new_tokens": args.max_tokens,
                "budget": {"max_tokens": args.n * args.max_tokens},
            }
            if args.seed is not None:
                body["seed"] = args.seed + index
            started = time.perf_counter()
            response = client.post("/v1/solve", json=body)
            seconds = time.perf_counter() - started
            if response.status_code != 200:
                sys.exit(f"ponder: HTTP {response.status_code}: {response.text}")
            answer = response.json()
            run.seconds.append(seconds)
            run.texts.append(answer["answer_text"] or "")
            run.samples += len(answer["candidates"])
            run.calls += answer["usage"]["engine_calls"]
            run.client_tokens += answer["usage"]["generated_tokens"]
            progress("ponder", index, len(questions), seconds)
    return run


def run_peer_client(
    name: str, args: argparse.Namespace, questions: list[str], system_prompt: str, model: str
) -> ClientRun:
    job = {
        "base_url": args.vllm.rstrip("/") + "/v1",
        "model": model,
        "system_prompt": system_prompt,
        "questions": questions,
        "n": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_tokens": args.max_tokens,
        "timeout": args.timeout,
        "optillm_native": args.optillm_native,
    }
    command = [args.peers_python, str(Path(__file__).resolve()), PEER_MODE, name]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )  # stderr passes through: the libraries' own logs
    assert process.stdin and process.stdout
    process.stdin.write(json.dumps(job))
    process.stdin.close()
    run = ClientRun(name)
    for line in process.stdout:
        row = json.loads(line)
        if "versions" in row:
            run.versions = row["versions"]
            continue
        run.seconds.append(row["seconds"])
        run.texts.append(row["text"])
        run.samples += row["samples"]
        run.calls += row["calls"]
        run.client_tokens += row["client_tokens"]
        progress(name, row["index"], len(questions), row["seconds"])
    if process.wait() != 0 or len(run.seconds) != len(questions):
        sys.exit(f"{name}: the peer runner failed (exit {process.returncode}); see above")
    return run


def progress(name: str, index: int, total: int, seconds: float) -> None:
    print(f"{name}: problem {index + 1}/{total}: {seconds:.1f} s", file=sys.stderr, flush=True)


def git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        return subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "no git"


def measure(args: argparse.Namespace) -> tuple[list[ClientRun], dict[str, Any]]:
    import httpx

    from clients.bench.datasets import Subset, load_dataset, parse_levels
    from clients.bench.grading import grade
    from search_strategies.answers import extract_answer
    from server.settings import DEFAULT_SYSTEM_PROMPT

    problems = load_dataset(
        "arithmetic", Subset(limit=args.problems, levels=parse_levels(args.levels) or (1,))
    )
    questions = [p.question for p in problems]
    names = args.clients.split(",")
    unknown = [n for n in names if n not in CLIENTS]
    if unknown:
        sys.exit(f"unknown clients {unknown}; choose from {CLIENTS}")
    if any(n in PEERS for n in names) and not args.peers_python:
        sys.exit("--peers-python: the Python of the peers' venv (setup in this file's docstring)")
    vllm = httpx.Client(base_url=args.vllm.rstrip("/"), timeout=args.timeout)
    model = vllm.get("/v1/models").json()["data"][0]["id"]
    setup = {"model": model, "vllm": vllm.get("/version").json().get("version", "?")}
    # One short request first, so no client pays for the engine's first call.
    vllm.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8},
    ).raise_for_status()
    runs = []
    for name in names:
        cache_reset = reset_prefix_cache(vllm)
        before = settled_counters(vllm)
        if name == "ponder":
            run = run_ponder(args, questions, DEFAULT_SYSTEM_PROMPT)
        else:
            run = run_peer_client(name, args, questions, DEFAULT_SYSTEM_PROMPT, model)
        after = settled_counters(vllm)
        run.cache_reset = cache_reset
        run.generated_tokens = int(after["generated"] - before["generated"])
        run.prompt_tokens = int(after["prompt"] - before["prompt"])
        run.engine_requests = int(after["requests"] - before["requests"])
        if run.generated_tokens == 0:
            sys.exit(f"{name}: vLLM at {args.vllm} generated nothing: is it the client's server?")
        for problem, text in zip(problems, run.texts):
            run.correct += grade(problem.grader, problem.gold, extract_answer(text)).correct
        runs.append(run)
        print(json.dumps({name: row(run, len(problems))}), file=sys.stderr, flush=True)
    vllm.close()
    return runs, setup


def row(run: ClientRun, problems: int) -> dict[str, Any]:
    return {
        "versions": run.versions,
        "problems": problems,
        "wall_s": round(run.wall_s, 2),
        "generated_tokens": run.generated_tokens,
        "tokens_per_s": round(run.tokens_per_s, 1),
        "client_reported_tokens": run.client_tokens,
        "prompt_tokens": run.prompt_tokens,
        "calls": run.calls,
        "engine_requests": run.engine_requests,
        "samples": run.samples,
        "accuracy": round(run.correct / problems, 3) if problems else 0.0,
        "prefix_cache_reset": run.cache_reset,
        "seconds": [round(s, 2) for s in run.seconds],
    }


def table(runs: list[ClientRun], setup: dict[str, Any], args: argparse.Namespace) -> str:
    problems = len(runs[0].seconds)
    lines = [
        f"{problems} arithmetic problems, {args.n} samples each, temperature {args.temperature}, "
        f"top_p {args.top_p}, at most {args.max_tokens} tokens per sample, one question at a "
        f"time; vLLM {setup['vllm']} serving {setup['model']}; tokens from vLLM's /metrics",
        "",
        "| client | versions | how | generated tokens | wall s | tokens/s | vs ponder "
        "| calls to vLLM | accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = next((r.tokens_per_s for r in runs if r.name == "ponder"), None)
    for run in runs:
        versions = ", ".join(f"{k} {v}" for k, v in run.versions.items())
        ratio = f"{run.tokens_per_s / base:.2f}x" if base else "-"
        lines.append(
            f"| {run.name} | {versions} | {HOW[run.name]} | {run.generated_tokens} "
            f"| {run.wall_s:.1f} | {run.tokens_per_s:.1f} | {ratio} | {run.calls} "
            f"| {run.correct}/{problems} |"
        )
    notes = [
        "its_hub and optillm send no top_p: vLLM's default (1.0) applies.",
        "optillm: temperature "
        + ("1 (its own, --optillm-native)" if args.optillm_native else "0.8 set by our wrapper")
        + "; samples cut at max_tokens are left out of its vote.",
    ]
    if not all(r.cache_reset for r in runs):
        notes.append(
            "prefix cache NOT reset between clients (start vLLM with VLLM_SERVER_DEV_MODE=1): "
            "later clients may read earlier ones' prompts from it."
        )
    mismatched = [r.name for r in runs if r.client_tokens != r.generated_tokens]
    if mismatched:
        notes.append(
            "client-reported tokens differ from vLLM's counter for "
            + ", ".join(f"{r.name} ({r.client_tokens})" for r in runs if r.name in mismatched)
        )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def main() -> None:
    if sys.argv[1:2] == [PEER_MODE]:
        run_peer(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vllm", default="http://127.0.0.1:8001", help="the shared vLLM server")
    parser.add_argument("--ponder", default="http://127.0.0.1:8123", help="ponder serve on it")
    parser.add_argument("--peers-python", help="python of the venv with its_hub and optillm")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="in this order")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--levels", default="1", help="arithmetic levels, e.g. 1 or 1-3")
    parser.add_argument("--n", type=int, default=8, help="samples per question")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=256, help="new tokens per sample")
    parser.add_argument("--seed", type=int, help="Ponder's request seed of the first problem")
    parser.add_argument(
        "--optillm-native", action="store_true", help="leave optillm's temperature 1 as it is"
    )
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    runs, setup = measure(args)
    print(table(runs, setup, args))
    if args.json:
        clients = {run.name: row(run, len(run.seconds)) for run in runs}
        report = {**setup, "args": vars(args), "clients": clients}
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
