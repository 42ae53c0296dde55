"""Start real servers (Ponder, `vllm serve`) as subprocesses on loopback for tests."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
#: Engine flags that fit the 2-core CI machine: eager start, small KV reservation.
ENGINE_FLAGS = ["--enforce-eager", "--gpu-memory-utilization", "0.2", "--max-model-len", "2048"]
#: The dtype of the shared session server: "auto" (what a user gets on this CPU: bf16
#: where the CPU has bf16 instructions, float32 elsewhere) unless PONDER_TEST_DTYPE
#: forces one. `make test-bf16` forces bfloat16, so a developer on a float32 machine
#: sees what a bf16 machine's suite would see (docs/reproducibility.md).
TEST_DTYPE = os.environ.get("PONDER_TEST_DTYPE", "auto")


class ShiftingSeeds(httpx.BaseTransport):
    """Adds to each JSON request's `seed` the number of requests this process sent
    through any `ShiftingSeeds` before it, so a repeated request never draws the same
    samples on the shared test server.

    bf16 machines do not promise that a seeded repeat draws the same samples
    (docs/reproducibility.md), and forcing bf16 on an AVX2 CPU does not reproduce
    that (its emulated bf16 repeated exactly: alone, batched and cached). Shifting the
    seeds gives every machine what a bf16 one may do, deterministically: a test
    that relies on repeats passes nowhere, and one that relies on a particular draw
    breaks when the order of requests changes. Such tests belong on `float32_server`.
    """

    _sent = itertools.count(1)

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(self._shifted(request))

    def close(self) -> None:
        self._inner.close()

    @classmethod
    def _shifted(cls, request: httpx.Request) -> httpx.Request:
        if "json" not in request.headers.get("content-type", ""):
            return request
        try:
            body = json.loads(request.read() or b"null")
        except ValueError:  # a test of malformed bodies: send it as it is
            return request
        if not isinstance(body, dict) or not isinstance(body.get("seed"), int):
            return request
        body["seed"] += next(cls._sent)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=json.dumps(body).encode(),
            extensions=request.extensions,
        )


def shifting_seeds_client(base_url: str, timeout: float = 300) -> httpx.Client:
    """An httpx client for the shared test server (see `ShiftingSeeds`)."""
    return httpx.Client(base_url=base_url, timeout=timeout, transport=ShiftingSeeds())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout_s: float = 60.0) -> list[str]:
        """SIGTERM the server; return descriptions of processes that outlived it."""
        children = self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        _, alive = psutil.wait_procs(children, timeout=15)
        leftovers = [f"{p.pid} {p.name()}" for p in alive]
        for process in alive:
            process.kill()
        return leftovers


def launch_server(args: list[str], log_path: Path) -> RunningServer:
    """Start `args` (which must listen on the port in its URL) without waiting for it,
    so several servers can boot at once; `wait_healthy` then waits for each."""
    port = free_port()
    command = [a.replace("{port}", str(port)) for a in args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log_file = log_path.open("w")
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO, env=env
    )
    return RunningServer(process, f"http://127.0.0.1:{port}", log_path)


def wait_healthy(
    server: RunningServer, health_path: str, timeout_s: float = 400.0
) -> RunningServer:
    """Wait until `health_path` answers 200; stop the server and raise if it never does."""
    deadline = time.monotonic() + timeout_s
    name = server.process.args[:4] if isinstance(server.process.args, list) else server.url
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + health_path, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.stop()
    raise RuntimeError(f"{name} not healthy after {timeout_s}s:\n{server.log_tail()}")


def start_server(
    args: list[str], log_path: Path, health_path: str, timeout_s: float = 400.0
) -> RunningServer:
    """Start `args` (which must listen on the port in its URL) and wait until healthy."""
    return wait_healthy(launch_server(args, log_path), health_path, timeout_s)


def ponder_command(*flags: str) -> list[str]:
    return [sys.executable, "-m", "server.cli", "serve", "--port", "{port}", *flags]


def wait_for(condition: Callable[[], bool], within_s: float) -> bool:
    """Poll `condition` every 0.1 s; whether it held within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
