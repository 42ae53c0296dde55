"""A real uvicorn server in a thread around `create_app` with a scripted policy.

For checks of the HTTP layer's logic that must run in seconds (the load-test client's
counting of 200s and 429s); the served behaviour itself is tested against real vLLM
in `ponder serve` subprocesses.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn

from search_strategies.protocols import ChatMessage, Generation, SamplingConfig
from server.app import create_app
from server.settings import Settings
from tests.fakes import ScriptedPolicy
from tests.servers import free_port


@dataclass
class StandInBackend:
    """A `PolicyBackend` around a scripted policy."""

    policy: ScriptedPolicy = field(default_factory=lambda: ScriptedPolicy(["The answer is 12."]))
    in_flight: int = 0

    @property
    def model_name(self) -> str:
        return self.policy.model_name

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return await self.policy.encode_chat(messages)

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        self.in_flight += 1
        try:
            return await self.policy.generate(prompts, params)
        finally:
            self.in_flight -= 1

    async def check_health(self) -> None:
        return None

    def running_requests(self) -> int:
        return self.in_flight

    async def close(self) -> None:
        return None


@contextmanager
def serve_in_thread(settings: Settings, backend: StandInBackend) -> Iterator[str]:
    """Serve the app on a free loopback port; yields the base URL."""

    async def factory(_: Settings) -> StandInBackend:
        return backend

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, factory),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("in-process server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
