"""All server configuration in one object, from CLI flags and `PONDER_*` variables.

Every flag has an environment twin (`--max-n` ↔ `PONDER_MAX_N`); a flag given on the
command line wins over the environment, which wins over the default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from reward_clients.registry import CLAUSE_SEPARATOR, KINDS, WEIGHT_FREE, kinds_help
from search_strategies.params import ServerLimits
from server.model_prep import EMBEDDED_MODEL_NAME, default_cache_dir

DEFAULT_SYSTEM_PROMPT = "Solve the problem step by step. Put the final answer in \\boxed{}."


@dataclass(frozen=True)
class Settings:
    """Server settings; see `ponder serve --help` for what each field means."""

    policy: str | None = None
    policy_url: str | None = None
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.25
    enforce_eager: bool = False
    #: None: 32 on CPU, vLLM's default on CUDA (server.policy.vllm_engine.resolve_block_size).
    block_size: int | None = None
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    remote_timeout_s: float = 300.0
    #: Header carrying the search id on each remote policy call; "" sends none.
    policy_session_header: str = "X-Session-ID"
    #: None: the default (server.rewards.reward_spec); "none" or "": no reward. Clauses
    #: are separated by ';' (a repeated --reward is joined so); see reward_clients.registry.
    reward: str | None = None
    prm: str | None = None
    prm_kind: str = ""
    prm_url: str | None = None
    prm_timeout_s: float = 60.0
    prm_gpu_memory_utilization: float = 0.15
    default_system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_n: int = 64
    max_new_tokens: int = 2048
    max_tokens: int = 65536
    max_reward_calls: int = 1024
    max_time_limit_s: float = 600.0
    max_steps: int = 64
    max_simulations: int = 1024
    log_level: str = "info"
    # Production: keys, request limits, concurrency (see server/auth.py, server/limits.py).
    api_key: tuple[str, ...] = ()
    api_key_file: Path | None = None
    metrics_require_key: bool = False
    max_concurrent_searches: int = 32
    max_queued_searches: int = 64
    max_body_bytes: int = 1_000_000
    max_messages: int = 256
    max_choices: int = 8
    sse_keepalive_s: float = 15.0
    #: None: the packaged table when serving the embedded model (server.auto_policy).
    auto_policy: Path | None = None

    @property
    def limits(self) -> ServerLimits:
        return ServerLimits(
            max_n=self.max_n,
            max_new_tokens=self.max_new_tokens,
            max_tokens=self.max_tokens,
            max_reward_calls=self.max_reward_calls,
            max_time_limit_s=self.max_time_limit_s,
            max_steps=self.max_steps,
            max_simulations=self.max_simulations,
        )

    @property
    def model_name(self) -> str:
        """The id clients see in `/v1/models` and responses."""
        if self.served_model_name:
            return self.served_model_name
        if self.policy:
            return Path(self.policy).name or self.policy
        return EMBEDDED_MODEL_NAME


_HELP = {
    "policy": "policy model: a local folder or a model id (default: the embedded "
    "SmolLM2-135M-Instruct, prepared on first start)",
    "policy_url": "use a remote OpenAI-compatible completions server instead of an "
    "in-process engine, e.g. http://127.0.0.1:8001/v1",
    "served_model_name": "model id reported to clients",
    "host": "address to listen on",
    "port": "port to listen on",
    "cache_dir": "where the embedded model is prepared (PONDER_CACHE)",
    "max_model_len": "vLLM context length",
    "gpu_memory_utilization": "vLLM memory fraction (on CPU: of one NUMA node's RAM)",
    "enforce_eager": "skip torch.compile: faster start, slightly slower decode",
    "block_size": "vLLM KV block size (CPU accepts multiples of 32); unset: 32 on CPU, "
    "where tree search then reads most prompt tokens from the prefix cache, vLLM's own "
    "default on GPUs",
    "dtype": "model dtype; 'auto' picks float32 on CPUs without bf16 instructions",
    "tensor_parallel_size": "vLLM tensor parallel degree (GPUs)",
    "remote_timeout_s": "timeout for each call to a remote policy",
    "policy_session_header": "header that carries the search's id on every call to a "
    "remote policy, so a router with session affinity keeps one search on one replica "
    "and its prefix in that replica's cache (vLLM's router: --policy consistent_hash "
    "hashes X-Session-ID); empty: no header",
    "reward": "rewards requests may use; repeat the flag (or separate clauses with ';') "
    "to give several clauses: a list NAME[,NAME...] (the first is the default), or "
    "NAME:WEIGHT[,...] (also one weighted ensemble named 'ensemble', the default); a "
    "definition NAME=KIND[:MODEL|URL], one per flag, names a reward of that kind "
    "(MODEL: a folder or id run in-process; URL: http(s):// of a remote vllm serve), "
    "and definitions the list does not name are offered after it (without a list, the "
    "first definition is the default). Kinds: "
    + kinds_help()
    + ". A list names "
    + ", ".join(WEIGHT_FREE)
    + " directly, defined names, and prm when --prm/--prm-url is set. Unset: arithmetic "
    "(prm,arithmetic with a PRM). 'none' (or empty): no reward; strategies that need one "
    "are then not listed in /v1/models and answer 400",
    "prm": "model of the reward named 'prm', run in-process (with --prm-url: the "
    "remote's served model name); same as --reward prm=KIND:MODEL",
    "prm_kind": "kind of the reward named 'prm': "
    + ", ".join(KINDS)
    + " (default qwen with --prm/--prm-url; see --reward for each kind)",
    "prm_url": "the reward named 'prm' is served by a remote `vllm serve` instead, e.g. "
    "http://127.0.0.1:8002; same as --reward prm=KIND:URL",
    "prm_timeout_s": "timeout for each call to a remote PRM or judge (every named one)",
    "prm_gpu_memory_utilization": "vLLM memory fraction of each in-process PRM or judge "
    "engine (every named one)",
    "default_system_prompt": "system prompt used when a request gives none",
    "max_n": "server maximum for a request's n",
    "max_new_tokens": "server maximum for a request's max_new_tokens",
    "max_tokens": "server maximum for a request's budget.max_tokens",
    "max_reward_calls": "server maximum for a request's budget.max_reward_calls",
    "max_time_limit_s": "server maximum for a request's budget.time_limit_s",
    "max_steps": "server maximum for a step search's max_steps (tree depth)",
    "max_simulations": "server maximum for MCTS simulations",
    "log_level": "uvicorn and ponder log level",
    "api_key": "accepted API key (repeat the flag for several; env: comma-separated); "
    "with any key set, every route but /health (and /metrics, see below) needs "
    "'Authorization: Bearer KEY'",
    "api_key_file": "file with one accepted API key per line (added to --api-key)",
    "metrics_require_key": "require an API key for /metrics too (default: open)",
    "max_concurrent_searches": "searches run at once; more wait in a queue (0: no limit)",
    "max_queued_searches": "searches that may wait for a slot; beyond that: 429",
    "max_body_bytes": "server maximum for a request body's size",
    "max_messages": "server maximum for a chat request's message count",
    "max_choices": "server maximum for a chat request's n (independent searches)",
    "auto_policy": "policy table of the auto strategy, made by `ponder bench fit-auto` "
    "(unset: the packaged one, fitted for the embedded model; for other models auto is "
    "then not offered)",
    "sse_keepalive_s": "seconds a chat stream may stay silent (a long search wave) before "
    "an SSE comment line keeps proxies from closing it (0: never)",
}
_ENV_NAMES = {"cache_dir": "PONDER_CACHE"}
_BOOLEANS = {"enforce_eager", "metrics_require_key"}
#: Flags that may be given several times (each occurrence adds to the list).
_REPEATABLE = {"api_key", "reward"}


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `Settings` field, defaulting to its `PONDER_*` variable."""
    for spec in fields(Settings):
        flag = "--" + spec.name.replace("_", "-")
        env_name = _ENV_NAMES.get(spec.name, "PONDER_" + spec.name.upper())
        help_text = f"{_HELP[spec.name]} [env {env_name}]"
        if spec.name in _REPEATABLE:
            parser.add_argument(flag, action="append", default=None, help=help_text)
        elif spec.name in _BOOLEANS:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(flag, default=None, help=help_text)


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Settings:
    """Build settings with CLI > environment > default precedence, typed per field."""
    environ = dict(os.environ if environ is None else environ)
    defaults = Settings()
    values: dict[str, Any] = {}  # each coerced to its field's type by _coerce
    for spec in fields(Settings):
        env_name = _ENV_NAMES.get(spec.name, "PONDER_" + spec.name.upper())
        raw = getattr(args, spec.name, None)
        if raw is None:
            raw = environ.get(env_name)
        if raw is None:
            continue
        values[spec.name] = _coerce(spec.name, raw, type(getattr(defaults, spec.name)))
    return Settings(**values)


def _coerce(name: str, raw: object, default_type: type) -> object:
    if name == "api_key":  # repeated flag (a list) or a comma-separated variable
        parts = raw if isinstance(raw, list) else str(raw).split(",")
        return tuple(p.strip() for p in parts if p.strip())
    if name == "reward":  # each --reward is one clause (server.rewards, registry)
        parts = raw if isinstance(raw, list) else [raw]
        return f"{CLAUSE_SEPARATOR} ".join(str(p).strip() for p in parts)
    if name in ("api_key_file", "auto_policy"):
        return Path(str(raw))
    if isinstance(raw, bool) or name in _BOOLEANS:
        return raw if isinstance(raw, bool) else str(raw).lower() in {"1", "true", "yes"}
    if name == "block_size":
        return int(str(raw))
    if default_type in (int, float):
        return default_type(str(raw))
    if name == "cache_dir":
        return Path(str(raw))
    return str(raw)
