"""`POST /v1/solve` with retries: a busy or restarting server delays a sweep, never ends it.

429 (too many requests) and 503 (backend unavailable) are what a loaded Ponder
answers; they are retried with exponential backoff (honouring `Retry-After`), as
are dropped connections. Any other 4xx means the grid asked for something the
server refuses (unknown strategy, n above its maximum): retrying cannot help, so
it is raised at once with the server's message.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUS = (429, 502, 503, 504)


class RequestRejected(Exception):
    """The server refused the request itself (4xx other than 429): fix the grid."""


class RetriesExhausted(Exception):
    """The server stayed busy or unreachable through every retry."""


@dataclass(frozen=True)
class Solved:
    body: dict[str, Any]
    #: Wall time of the successful attempt, as the client saw it.
    latency_s: float
    attempts: int


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_backoff_s)
            except ValueError:
                pass
        base = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        return base * random.uniform(0.5, 1.0)  # jitter: retries do not arrive together


class SolveClient:
    def __init__(
        self,
        base_url: str,
        timeout_s: float = 1800.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> SolveClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def model_name(self) -> str:
        """The served model's name; also checks the server is there before a long sweep."""
        response = await self.http.get("/health")
        response.raise_for_status()
        return str(response.json().get("model", "unknown"))

    async def solve(self, request: dict[str, Any]) -> Solved:
        last_error = ""
        for attempt in range(self.retry.retries + 1):
            started = time.perf_counter()
            retry_after = None
            try:
                response = await self.http.post("/v1/solve", json=request)
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return Solved(response.json(), time.perf_counter() - started, attempt + 1)
                if response.status_code not in RETRY_STATUS:
                    raise RequestRejected(f"HTTP {response.status_code}: {_message(response)}")
                last_error = f"HTTP {response.status_code}: {_message(response)}"
                retry_after = response.headers.get("retry-after")
            if attempt < self.retry.retries:
                await asyncio.sleep(self.retry.delay(attempt, retry_after))
        raise RetriesExhausted(f"{self.retry.retries + 1} attempts, last: {last_error}")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error", body.get("detail", body)) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)[:300]
