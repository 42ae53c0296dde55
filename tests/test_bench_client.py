"""`ponder bench` HTTP client: retries 429/503 with backoff, gives up on other 4xx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from clients.bench.client import (
    RequestRejected,
    RetriesExhausted,
    RetryPolicy,
    SolveClient,
)

FAST = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05)


def _server(statuses: list[int], seen: list[float]) -> httpx.MockTransport:
    """Answers with `statuses` in turn (then 200), recording when each request came."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(asyncio.get_running_loop().time())
        status = statuses.pop(0) if statuses else 200
        if status == 200:
            return httpx.Response(200, json={"answer": "4"})
        headers = {"retry-after": "0.05"} if status == 429 else {}
        return httpx.Response(
            status, json={"error": {"message": f"busy {status}"}}, headers=headers
        )

    return httpx.MockTransport(handle)


async def _solve(statuses: list[int], seen: list[float]):
    async with SolveClient("http://ponder", retry=FAST, transport=_server(statuses, seen)) as c:
        return await c.solve({"question": "q"})


def test_busy_answers_are_retried_until_success() -> None:
    seen: list[float] = []
    solved = asyncio.run(_solve([429, 503, 503], seen))
    assert solved.body == {"answer": "4"} and solved.attempts == 4
    assert seen[1] - seen[0] >= 0.05  # Retry-After honoured


def test_retries_run_out_with_the_last_error() -> None:
    with pytest.raises(RetriesExhausted, match="HTTP 503: busy 503"):
        asyncio.run(_solve([503] * 10, []))


def test_a_rejected_request_is_not_retried() -> None:
    seen: list[float] = []
    with pytest.raises(RequestRejected, match="HTTP 400: busy 400"):
        asyncio.run(_solve([400], seen))
    assert len(seen) == 1


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=5.0)
    assert 0.5 <= policy.delay(0, None) <= 1.0
    assert 2.0 <= policy.delay(2, None) <= 4.0
    assert policy.delay(10, None) <= 5.0
    assert policy.delay(0, "3") == 3.0
