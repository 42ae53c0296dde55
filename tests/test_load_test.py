"""`clients/load_test.py` end to end against the app with a stand-in policy (seconds, no engine).

The real run against the embedded model is reported in docs/benchmarks.md ("Load test").
"""

from __future__ import annotations

import asyncio

import pytest

from clients.load_test import parse_args, run
from server.openai_api import model_ids
from server.settings import Settings
from tests.fakes import ScriptedPolicy
from tests.inprocess import StandInBackend, serve_in_thread


def test_counts_answers_and_clear_429s_and_loses_nothing() -> None:
    backend = StandInBackend(ScriptedPolicy(["3 * 4 = 12. The answer is 12."], delay_s=0.2))
    settings = Settings(
        max_concurrent_searches=2, max_queued_searches=1, api_key=("k",), reward="arithmetic"
    )  # step searches need a reward
    with serve_in_thread(settings, backend) as url:
        args = parse_args(
            [
                "--url",
                url,
                "--api-key",
                "k",
                "--clients",
                "6",
                "--duration",
                "1.5",
                "--baseline",
                "--baseline-n",
                "4",
            ]
        )
        report = asyncio.run(run(args))
    assert report.lost == 0 and report.server_errors == 0
    assert report.ok > 0 and report.status_counts.get("429", 0) > 0
    assert set(report.status_counts) <= {"200", "429"}
    assert set(report.per_model) == set(model_ids("scripted"))  # every strategy in the mix
    assert report.completion_tokens > 0 and report.tokens_per_s > 0
    assert report.baseline_tokens_per_s and report.ratio
    assert report.p50_s <= report.p99_s
    assert report.wall_s < 15  # bounded: no new request after --duration


@pytest.mark.parametrize(
    "argv", [["--clients", "0"], ["--clients", "1000"], ["--duration", "0"], ["--duration", "3600"]]
)
def test_runs_are_bounded(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
