"""A real uvicorn server in a thread around `create_app` with a stand-in policy.

For what does not depend on the engine (error mapping of a failing backend, SSE
framing); everything else runs against real vLLM in a `ponder serve` subprocess.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import uvicorn

from search_strategies.protocols import ChatMessage, Generation, SamplingConfig
from server.app import create_app
from server.policy.errors import PolicyUnavailable
from server.settings import Settings
from tests.fakes import ScriptedPolicy
from tests.servers import free_port


@dataclass
class StandInBackend:
    """A `PolicyBackend` around a scripted policy; `failing` makes every call a 503."""

    policy: ScriptedPolicy = field(default_factory=lambda: ScriptedPolicy(["The answer is 12."]))
    failing: bool = False
    in_flight: int = 0

    @property
    def model_name(self) -> str:
        return self.policy.model_name

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return await self.policy.encode_chat(messages)

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        if self.failing:
            raise PolicyUnavailable("stand-in policy backend is down")
        self.in_flight += 1
        try:
            return await self.policy.generate(prompts, params)
        finally:
            self.in_flight -= 1

    async def check_health(self) -> None:
        if self.failing:
            raise PolicyUnavailable("stand-in policy backend is down")

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
        uvicorn.Config(create_app(settings, factory), host="127.0.0.1", port=port,
                       log_level="warning", access_log=False)
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
