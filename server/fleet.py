"""`ponder fleet`: policy replicas behind vLLM's router, and Ponder in front, in one command.

The topology of docs/deployment.md ("Scaling out"), on one machine: N `vllm serve`
replicas of the policy on loopback ports, `vllm-router` (vLLM's load balancer; a Rust
binary from PyPI) in front of them, and `ponder serve --policy-url` pointing at the
router. Ponder sends each search's id in `X-Session-ID` (`--policy-session-header`),
and the router's `consistent_hash` policy hashes that header, so every engine call of
one search lands on one replica, whose prefix cache holds the search's shared prefix.
Nothing here balances load: this module starts, watches and stops processes.

A reward model is not replicated: Ponder runs it as `ponder serve` would (in-process,
or `--reward NAME=KIND:URL` to one remote server). Scoring is one prefill per path,
and a second copy of a PRM costs memory a laptop does not have.

The router is told to give up on a dead replica at its first failed call
(`--cb-failure-threshold 1`) and to health-check every few seconds, so the one retry
Ponder makes after a failed engine call (server.policy.remote) reaches a live replica.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

#: vLLM's router's policies that Ponder's docs describe (the router has more).
ROUTER_POLICIES = ("consistent_hash", "cache_aware", "round_robin", "power_of_two", "random")


class FleetError(RuntimeError):
    """A part of the fleet could not start (its log's tail is in the message)."""


@dataclass(frozen=True)
class FleetPlan:
    """What to start, and where; `commands()` turns it into command lines."""

    model: str
    served_model_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    router_port: int = 8100
    #: One loopback port per replica (their number is the number of replicas).
    replica_ports: tuple[int, ...] = (8101, 8102)
    router_policy: str = "consistent_hash"
    #: Passed to every `vllm serve` replica (dtype, block size, memory...).
    engine_args: tuple[str, ...] = ()
    #: Passed to `ponder serve` after the fleet's own flags (rewards, keys, limits...).
    serve_args: tuple[str, ...] = ()
    #: Per replica, the CPU cores its engine computes on (VLLM_CPU_OMP_THREADS_BIND);
    #: empty: vLLM's own binding (GPUs, or a binding the user set).
    replica_cores: tuple[str, ...] = ()
    log_dir: Path = field(default_factory=lambda: Path("fleet-logs"))

    @property
    def replica_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.replica_ports]

    @property
    def router_url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def replica_command(self, index: int) -> list[str]:
        # `python -m`: vllm-cpu's `vllm` script looks up a distribution named `vllm`.
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1", "--port", str(self.replica_ports[index]),
            *self.engine_args,
        ]  # fmt: skip

    def replica_env(self, index: int) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.replica_cores:
            env["VLLM_CPU_OMP_THREADS_BIND"] = self.replica_cores[index]
        return env

    def router_command(self, router: str, policy: str | None = None) -> list[str]:
        return [
            router, "--host", "127.0.0.1", "--port", str(self.router_port),
            "--worker-urls", *self.replica_urls, "--policy", policy or self.router_policy,
            # A dead replica: out at its first failed call, and found by health checks
            # within seconds (the defaults are 5 failures and 60 s).
            "--cb-failure-threshold", "1",
            "--health-check-interval-secs", "3", "--health-failure-threshold", "2",
        ]  # fmt: skip

    def ponder_command(self, policy_url: str | None = None, extra: Sequence[str] = ()) -> list[str]:
        """`ponder serve` on the router (or on `policy_url`: one replica, to compare)."""
        return [
            sys.executable, "-m", "server.cli", "serve",
            "--policy-url", policy_url or self.router_url + "/v1",
            "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
            *self.serve_args, *extra,
        ]  # fmt: skip


def free_port() -> int:
    """A loopback port nobody listens on now (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_router() -> str:
    """The `vllm-router` executable: beside this Python (a venv) or on PATH."""
    beside = Path(sys.executable).parent / "vllm-router"
    found = str(beside) if beside.exists() else shutil.which("vllm-router")
    if not found:
        raise FleetError(
            "vllm-router is not installed; install it with: pip install 'ponder[fleet]' "
            "(or pip install vllm-router)"
        )
    return found


@dataclass
class Part:
    """One started process (its own process group, so stopping it stops its children)."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Fleet:
    """Starts the parts in order (replicas, router, Ponder), each healthy before the
    next; `stop` ends them in reverse order. `state()` is what `fleet.json` holds."""

    def __init__(self, plan: FleetPlan, startup_timeout_s: float = 900.0) -> None:
        self.plan = plan
        self.startup_timeout_s = startup_timeout_s
        self.parts: list[Part] = []

    def start(self) -> None:
        """Replicas (booting together), then the router, then Ponder; `fleet.json`."""
        try:
            self.start_replicas()
            self.start_router()
            self.start_ponder()
        except BaseException:
            self.stop()
            raise
        (self.plan.log_dir / "fleet.json").write_text(json.dumps(self.state(), indent=1) + "\n")

    def start_replicas(self) -> list[Part]:
        self.plan.log_dir.mkdir(parents=True, exist_ok=True)
        replicas = [
            self._launch(
                f"replica-{i}", url, self.plan.replica_command(i), self.plan.replica_env(i)
            )
            for i, url in enumerate(self.plan.replica_urls)
        ]
        for part in replicas:
            self._wait_healthy(part, "/health")
        return replicas

    def start_router(self, policy: str | None = None) -> Part:
        command = self.plan.router_command(find_router(), policy)
        part = self._launch("router", self.plan.router_url, command)
        self._wait_healthy(part, "/health")
        return part

    def start_ponder(self, policy_url: str | None = None, extra: Sequence[str] = ()) -> Part:
        url = f"http://{self.plan.host}:{self.plan.port}"
        part = self._launch("ponder", url, self.plan.ponder_command(policy_url, extra))
        self._wait_healthy(part, "/health")
        return part

    def state(self) -> dict[str, dict[str, object]]:
        return {p.name: {"url": p.url, "pid": p.process.pid, "log": str(p.log)} for p in self.parts}

    def failed_part(self) -> Part | None:
        """A part that exited by itself, if any."""
        return next((p for p in self.parts if p.process.poll() is not None), None)

    def stop(self, grace_s: float = 20.0) -> None:
        """Every part, in reverse order of start."""
        for part in reversed(list(self.parts)):
            self.stop_part(part, grace_s)

    def stop_part(self, part: Part, grace_s: float = 20.0) -> None:
        _stop_group(part.process, grace_s)
        self.parts.remove(part)

    def _launch(
        self, name: str, url: str, command: list[str], env: dict[str, str] | None = None
    ) -> Part:
        log = self.plan.log_dir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopped with its engine children
                env=env or dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        part = Part(name, url, process, log)
        self.parts.append(part)
        return part

    def _wait_healthy(self, part: Part, path: str) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if part.process.poll() is not None:
                raise FleetError(f"{part.name} exited at start ({part.log}):\n{part.tail()}")
            try:
                if httpx.get(part.url + path, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise FleetError(
            f"{part.name} not healthy after {self.startup_timeout_s:.0f} s ({part.log}):\n"
            + part.tail()
        )


def _stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process's group, then SIGKILL what is left after `grace_s`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # engine children that outlived the parent
    except ProcessLookupError:
        pass
    process.wait()


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The fleet's own flags, and what follows `--` (for `ponder serve`)."""
    argv = list(argv)
    serve_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, serve_args = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        prog="ponder fleet",
        description="Policy replicas (vllm serve) behind vLLM's router, and Ponder in "
        "front of the router, on this machine. Flags after `--` go to ponder serve.",
        epilog="example: ponder fleet --replicas 2 --enforce-eager -- --reward arithmetic",
    )
    parser.add_argument("--replicas", type=int, default=2, help="policy replicas (default 2)")
    parser.add_argument(
        "--policy", help="policy model folder or id (default: the embedded SmolLM2-135M)"
    )
    parser.add_argument("--served-model-name", help="model id (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1", help="Ponder's address")
    parser.add_argument("--port", type=int, default=8000, help="Ponder's port (0: any free)")
    parser.add_argument("--router-port", type=int, default=8100, help="0: any free port")
    parser.add_argument(
        "--replica-port",
        type=int,
        default=8101,
        help="the first replica's port, then +1... (0: any free ports)",
    )
    parser.add_argument(
        "--router-policy",
        choices=ROUTER_POLICIES,
        default="consistent_hash",
        help="consistent_hash keeps a search on one replica (it hashes X-Session-ID)",
    )
    parser.add_argument("--dtype", default="auto", help="replicas' dtype")
    parser.add_argument(
        "--block-size", type=int, help="replicas' KV block size (default: 32 on CPU)"
    )
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.2)
    parser.add_argument("--enforce-eager", action="store_true", help="replicas skip compiling")
    parser.add_argument("--log-dir", type=Path, default=Path("fleet-logs"))
    parser.add_argument("--startup-timeout-s", type=float, default=900.0)
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    return args, serve_args


def split_cores(cores: Sequence[int], replicas: int) -> tuple[str, ...]:
    """The cores, split into `replicas` contiguous shares (VLLM_CPU_OMP_THREADS_BIND
    lists), or none when there are fewer cores than replicas.

    vLLM's CPU build binds its threads to fixed cores; two replicas left to their
    default would both compute on the same ones (on 2 cores: both on core 0).
    """
    if replicas > len(cores):
        return ()
    share, extra = divmod(len(cores), replicas)
    shares, start = [], 0
    for i in range(replicas):
        size = share + (1 if i < extra else 0)
        shares.append(",".join(str(c) for c in cores[start : start + size]))
        start += size
    return tuple(shares)


def plan_from(args: argparse.Namespace, serve_args: Sequence[str]) -> FleetPlan:
    from server.model_prep import EMBEDDED_MODEL_NAME, prepare_embedded_model
    from server.policy.vllm_engine import has_cuda, resolve_block_size, resolve_dtype

    model = args.policy or str(prepare_embedded_model())
    name = args.served_model_name or (
        EMBEDDED_MODEL_NAME if not args.policy else Path(args.policy).name or args.policy
    )
    cuda = has_cuda()
    block_size = resolve_block_size(args.block_size)
    cores: tuple[str, ...] = ()
    if not cuda and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        cores = split_cores(sorted(os.sched_getaffinity(0)), args.replicas)
    engine = [
        "--dtype", resolve_dtype(args.dtype), "--max-model-len", str(args.max_model_len),
        "--gpu-memory-utilization", str(args.gpu_memory_utilization),
    ]  # fmt: skip
    if block_size:
        engine += ["--block-size", str(block_size)]
    if not cuda:
        # Ponder's requests carry seeds; a seeded request whose token is discarded after
        # a chunked prefill rewinds its generator, which a CPU generator cannot do, and
        # the engine dies (../shared/PLATFORM.md; the in-process engine turns it off
        # the same way, server.policy.vllm_engine.engine_args).
        engine += [
            "--no-enable-chunked-prefill",
            "--max-num-batched-tokens", str(max(args.max_model_len, 8192)),
        ]  # fmt: skip
    if args.enforce_eager:
        engine.append("--enforce-eager")
    return FleetPlan(
        model=model,
        served_model_name=name,
        host=args.host,
        port=args.port or free_port(),
        router_port=args.router_port or free_port(),
        replica_ports=tuple(
            args.replica_port + i if args.replica_port else free_port()
            for i in range(args.replicas)
        ),
        router_policy=args.router_policy,
        engine_args=tuple(engine),
        serve_args=tuple(serve_args),
        replica_cores=cores,
        log_dir=args.log_dir,
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the fleet as Ctrl-C does


def main(argv: Sequence[str]) -> int:
    """Start the fleet, keep it up until Ctrl-C or SIGTERM (or until the router or
    Ponder dies: a dead replica is what the fleet is built to survive), stop it all."""
    args, serve_args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    fleet = Fleet(plan_from(args, serve_args), args.startup_timeout_s)
    try:
        fleet.start()
        for name, part in fleet.state().items():
            print(f"{name:10} {part['url']}  (log: {part['log']})", flush=True)
        print(f"fleet up: Ponder at {fleet.parts[-1].url}; Ctrl-C stops it", flush=True)
        while True:
            failed = fleet.failed_part()
            if failed is not None and failed.name in ("router", "ponder"):
                print(f"ponder fleet: {failed.name} exited:\n{failed.tail()}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except FleetError as error:
        print(f"ponder fleet: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        fleet.stop()
