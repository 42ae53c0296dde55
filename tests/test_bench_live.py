"""`ponder bench` against the live session server on the embedded model.

Generation is kept tiny (n <= 4, 48 new tokens) so these run in about two minutes
on the 2-core CI machine.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from clients.bench.datasets import Subset, load_dataset
from clients.bench.grading import grade
from clients.bench.grid import expand, parse_run
from clients.bench.store import read_rows
from clients.bench.subsample import subsample
from tests.servers import REPO

TINY = ["--param", "max_new_tokens=48", "--reward", "arithmetic"]
SWEEP = [
    "--dataset",
    "arithmetic",
    "--levels",
    "1",
    "--limit",
    "5",
    *TINY,
    "--run",
    "best_of_n n=4 selection=weighted",
    "--run",
    "best_of_n n=2 selection=majority subsample=false label=direct",
    "--concurrency",
    "1",
    "--no-progress",
]
REQUESTS = 5 * 2  # 5 problems x (one subsampled best-of-4 + a direct best-of-2)


def _bench(url: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "clients.bench", "--server", url, *SWEEP, "--out", str(out)]


def _summary(out: Path) -> list[dict[str, str]]:
    """summary.csv without wall-clock latency, which differs between any two runs."""
    with (out / "summary.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k != "mean_latency_s"}
            for row in csv.DictReader(handle)
        ]


def _points(out: Path) -> list[tuple[str, str, str]]:
    return [(r["problem_id"], r["label"], r["setting"]) for r in read_rows(out / "results.jsonl")]


def test_killed_and_resumed_sweep_equals_an_uninterrupted_one(float32_server, tmp_path) -> None:
    """Equal summaries need bit-identical repeats: float32 (docs/reproducibility.md)."""
    whole = tmp_path / "whole"
    done = subprocess.run(
        _bench(float32_server.url, whole), cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{REQUESTS} requests" in done.stdout

    resumed = tmp_path / "resumed"
    process = subprocess.Popen(
        _bench(float32_server.url, resumed),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = resumed / "results.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        rows = read_rows(results)  # [] until the file exists
        if len({(r["problem_id"], r["cell"]) for r in rows}) >= 2:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(60)
    assert process.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    before = read_rows(results)
    assert 0 < len({(r["problem_id"], r["cell"]) for r in before}) < REQUESTS

    again = subprocess.run(
        _bench(float32_server.url, resumed), cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stderr[-3000:]
    redone = int(again.stdout.split(" requests")[0].split()[-1])
    assert redone < REQUESTS and "already done (resumed)" in again.stdout

    points = _points(resumed)
    assert len(points) == len(set(points)), "duplicate rows after resume"
    assert sorted(points) == sorted(_points(whole))
    assert read_rows(results)[: len(before)] == before  # finished work was not redone
    assert _summary(resumed) == _summary(whole)
    assert {r["label"] for r in _summary(whole)} == {
        "best_of_n/majority",
        "best_of_n/weighted",
        "best_of_n/max_reward",
        "direct",
    }
    assert (resumed / "plot.png").stat().st_size > 10_000
    # Every kept sample is graded, so coverage (pass@k) can be read from the file.
    sources = [r for r in read_rows(whole / "results.jsonl") if r.get("samples")]
    assert len(sources) == 5 and all(len(r["samples"]) == 4 for r in sources)
    assert all(
        s["correct"] == grade("numeric", r["gold"], s["answer"]).correct
        for r in sources
        for s in r["samples"]
    )
    assert "pass@k" in done.stdout and len((whole / "coverage.csv").read_text().splitlines()) == 4


def test_subsampled_picks_equal_direct_runs_on_the_same_samples(float32_server) -> None:
    """A best-of-4 response replayed at n=1, 2 picks what best-of-1, 2 requests pick.

    With a seed the direct run draws the same first samples (checked), so this
    compares the curve a sweep reports with what the server itself would answer.
    Equal samples need float32 (docs/reproducibility.md); in bf16 the replay is a
    draw from the same distribution, not the same draw.
    """
    problems = load_dataset("arithmetic", Subset(limit=2, levels=(1,), seed=11))
    (cell,) = expand(
        [parse_run("best_of_n n=4 selection=weighted max_new_tokens=48 reward=arithmetic")]
    )
    compared = 0
    with httpx.Client(base_url=float32_server.url, timeout=300) as http:
        for problem in problems:
            request = cell.request(problem.question, problem.id)
            big = http.post("/v1/solve", json=request).json()
            assert len(big["candidates"]) == 4
            for size, selection in [
                (1, "weighted"),
                (2, "majority"),
                (2, "weighted"),
                (2, "max_reward"),
            ]:
                direct = http.post(
                    "/v1/solve", json={**request, "n": size, "selection": selection}
                ).json()
                assert [c["text"] for c in direct["candidates"]] == [
                    c["text"] for c in big["candidates"][:size]
                ]
                (pick,) = subsample(big, (size,), (selection,))
                assert pick.answer == direct["answer"], (problem.id, size, selection)
                assert pick.usage["generated_tokens"] == direct["usage"]["generated_tokens"]
                compared += 1
    assert compared == 8
