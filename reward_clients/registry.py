"""Every reward kind in ONE table (`KINDS`), and the `--reward` grammar over it.

The table builds every reward (weight-free or learned), and the CLI help
(`kinds_help`) and the validation (`parse_reward_spec`) are derived from it, so a
new kind is one row here (plus its client class).

`--reward` is a sequence of *clauses*, each given as its own `--reward` or separated
by `;` in one value (`PONDER_REWARD`):

- a list `NAME[,NAME...]`: the choices, the first is the default (`arithmetic,self-judge`);
- a weighted list `NAME:WEIGHT[,NAME:WEIGHT...]`: also one weighted-mean ensemble named
  `ensemble`, which becomes the default while each member stays selectable;
- a definition `NAME=KIND` or `NAME=KIND:SOURCE`, one per clause: a reward named NAME of
  that kind. SOURCE is a model folder or id (run in-process) or an `http(s)://` URL
  (a remote `vllm serve`); everything after `KIND:` is the source, so it may contain
  `:` and `/`, and a definition therefore never shares its clause with a list;
- `none` (or nothing at all): no reward.

A list names weight-free kinds by their own name (`arithmetic`, `self-judge`; these
names cannot be defined) or defined names (a learned kind's name may be one:
`qwen=qwen:URL`); definitions the list does not name are offered after it, in the
order given. Names defined outside the spec (the server's `--prm`, named `prm`) are
passed in as `extra`.

This module imports nothing from the server: a learned kind gets its backend (an
in-process engine or a remote server) from a `RewardContext` the server provides.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from urllib.parse import urlsplit

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.combinators import Renamed, WeightedEnsemble
from reward_clients.learned_prm import PRMBackend, QwenPRM, TokenLogitPRM
from reward_clients.self_judge import SelfJudge
from search_strategies.protocols import Policy
from search_strategies.reward import RewardModel

ENSEMBLE = "ensemble"
#: The `--reward` value that offers no reward (an empty value means the same).
NO_REWARD = "none"
#: Separates clauses inside one `--reward` value; a repeated `--reward` means the same.
CLAUSE_SEPARATOR = ";"
#: What a reward name may look like (it is also the request's `"reward"` value).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
#: A source ending like this was most likely meant as a weight (`q=qwen:/m:0.5`).
_WEIGHT_SUFFIX = re.compile(r":[0-9]*\.?[0-9]+\Z")


@dataclass(frozen=True)
class ModelSource:
    """Where a reward's own model runs: a remote server (`url`) or in-process (`model`).

    With a `url`, `model` is the served model name (None: the server's first model).
    """

    model: str | None = None
    url: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSource:
        """`http(s)://HOST[:PORT][/v1]` is a remote server; anything else a model."""
        if "://" in text:
            return cls(url=text)
        return cls(model=text)

    def __str__(self) -> str:
        if self.url:
            return self.url + (f" (model {self.model})" if self.model else "")
        return self.model or "the policy"


@dataclass(frozen=True)
class RewardDef:
    """A named reward of one kind: `--reward NAME=KIND[:SOURCE]`, or the `--prm` flags."""

    name: str
    kind: str
    source: ModelSource | None = None


class RewardContext(Protocol):
    """What building a reward may need from the server.

    Whatever the two factories open is the server's to close and health-check, under
    the reward's name.
    """

    @property
    def policy(self) -> Policy:
        """The server's policy (a self-judge without a model of its own asks it)."""
        ...

    def prm_backend(self, name: str, source: ModelSource, pooling: bool) -> PRMBackend:
        """A PRM backend for `source`: the pooling runner (Qwen) or a generating one."""
        ...

    async def judge_policy(self, name: str, source: ModelSource) -> Policy:
        """A model to ask yes/no questions: an engine of its own, or a remote server."""
        ...


ModelNeed = Literal["none", "optional", "required"]


@dataclass(frozen=True)
class RewardKind:
    """One row of the table: a kind, what it needs and how to build it."""

    name: str
    #: One line for the CLI help.
    summary: str
    #: Whether `NAME=KIND:SOURCE` takes a source: never, optionally, always.
    model: ModelNeed
    build: Callable[[RewardContext, RewardDef], Awaitable[RewardModel]]

    @property
    def usage(self) -> str:
        """How a definition of this kind is written."""
        return {
            "none": f"NAME={self.name}",
            "optional": f"NAME={self.name}[:MODEL|URL]",
            "required": f"NAME={self.name}:MODEL|URL",
        }[self.model]


def _named(reward: RewardModel, name: str) -> RewardModel:
    return reward if reward.name == name else Renamed(reward, name)


async def _arithmetic(_ctx: RewardContext, spec: RewardDef) -> RewardModel:
    return _named(ArithmeticVerifier(), spec.name)


async def _self_judge(ctx: RewardContext, spec: RewardDef) -> RewardModel:
    judge = ctx.policy if spec.source is None else await ctx.judge_policy(spec.name, spec.source)
    return _named(SelfJudge(judge), spec.name)


async def _qwen(ctx: RewardContext, spec: RewardDef) -> RewardModel:
    assert spec.source is not None
    return QwenPRM(ctx.prm_backend(spec.name, spec.source, pooling=True), spec.name)


def _token_logit(
    fmt: Literal["math-shepherd", "rlhflow"],
) -> Callable[[RewardContext, RewardDef], Awaitable[RewardModel]]:
    async def build(ctx: RewardContext, spec: RewardDef) -> RewardModel:
        assert spec.source is not None
        return TokenLogitPRM(ctx.prm_backend(spec.name, spec.source, pooling=False), fmt, spec.name)

    return build


#: THE table of reward kinds (order: as the help lists them).
KINDS: dict[str, RewardKind] = {
    kind.name: kind
    for kind in (
        RewardKind(
            "arithmetic",
            "checks every arithmetic claim of a step exactly (no model)",
            "none",
            _arithmetic,
        ),
        RewardKind(
            "self-judge",
            "a chat model answers 'is the new step correct?' yes/no "
            "(without MODEL|URL: the policy itself)",
            "optional",
            _self_judge,
        ),
        RewardKind("qwen", "Qwen2.5-Math-PRM, the classifier at each <extra_0>", "required", _qwen),
        RewardKind(
            "math-shepherd",
            "Math-Shepherd PRM, P(+) at each step tag",
            "required",
            _token_logit("math-shepherd"),
        ),
        RewardKind(
            "rlhflow",
            "RLHFlow Llama3.1-8B-PRM, P(+) after each step's turn",
            "required",
            _token_logit("rlhflow"),
        ),
    )
}
#: Kinds a list may name without a definition (they need no model).
WEIGHT_FREE = tuple(name for name, kind in KINDS.items() if kind.model != "required")
_RESERVED = {ENSEMBLE, NO_REWARD}


def kinds_help() -> str:
    """Every kind with how it is written and what it does, for `--help`."""
    return "; ".join(f"{kind.usage}: {kind.summary}" for kind in KINDS.values())


@dataclass(frozen=True)
class RewardSpec:
    """A parsed `--reward` value."""

    #: Names the list clauses give, in order (the first is the default).
    names: tuple[str, ...] = ()
    #: name -> weight when the list was weighted (an ensemble), else empty.
    weights: Mapping[str, float] = field(default_factory=dict)
    #: The `NAME=KIND[:SOURCE]` clauses, in order.
    definitions: tuple[RewardDef, ...] = ()

    @property
    def choices(self) -> tuple[str, ...]:
        """What a request may name, the default first (names defined outside the spec,
        `extra`, come after these)."""
        defined = tuple(d.name for d in self.definitions if d.name not in self.names)
        return ((ENSEMBLE,) if self.weights else ()) + self.names + defined


def split_clauses(spec: str) -> list[str]:
    """The non-empty clauses of a `--reward` value."""
    return [clause.strip() for clause in spec.split(CLAUSE_SEPARATOR) if clause.strip()]


def parse_reward_spec(spec: str, extra: Sequence[str] = ()) -> RewardSpec:
    """Parse a `--reward` value (module docstring); errors say what to fix.

    `extra` are names defined outside the spec (the server's `prm`): a list may name
    them, and the spec may not define them again.
    """
    clauses = split_clauses(spec)
    if [item.strip() for clause in clauses for item in clause.split(",")] == [NO_REWARD]:
        return RewardSpec()
    names: list[str] = []
    weights: dict[str, float] = {}
    definitions: dict[str, RewardDef] = {}
    for clause in clauses:
        if "=" in clause:
            definition = _parse_definition(clause)
            if definition.name in definitions or definition.name in extra:
                raise ValueError(
                    f"reward {definition.name!r} is defined twice"
                    + (" (also by --prm/--prm-url/--prm-kind)" if definition.name in extra else "")
                )
            definitions[definition.name] = definition
            continue
        for item in (part.strip() for part in clause.split(",")):
            if not item:
                continue
            name, weight = _parse_item(item, spec)
            if name in names:
                raise ValueError(f"reward {name!r} is listed twice")
            names.append(name)
            if weight is not None:
                weights[name] = weight
    if weights and len(weights) != len(names):
        raise ValueError(
            "give every listed reward a weight (an ensemble) or none (choices), "
            f"not a mix: {spec!r}"
        )
    known = set(WEIGHT_FREE) | set(definitions) | set(extra)
    for name in names:
        if name in known:
            continue
        if name in KINDS:
            raise ValueError(
                f"reward kind {name!r} needs a model: define a named reward, "
                f"--reward {KINDS[name].usage} (then list NAME)"
            )
        raise ValueError(
            f"unknown reward {name!r}; available: {', '.join(sorted(known))} "
            f"(or define one: NAME=KIND[:MODEL|URL], kinds: {', '.join(KINDS)})"
        )
    return RewardSpec(tuple(names), weights, tuple(definitions.values()))


def _parse_item(item: str, spec: str) -> tuple[str, float | None]:
    """`NAME` or `NAME:WEIGHT` of a list clause."""
    name, sep, raw_weight = (part.strip() for part in item.partition(":"))
    if name == NO_REWARD:
        raise ValueError(
            f"reward {NO_REWARD!r} means no reward and cannot be listed with others: {spec!r}"
        )
    if not sep:
        return name, None
    try:
        weight = float(raw_weight)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        hint = ""
        if name in KINDS and KINDS[name].model != "none":
            hint = (
                f"; to give kind {name!r} a model, define a named reward: "
                f"--reward NAME={name}:{raw_weight}"
            )
        raise ValueError(
            f"weight of reward {name!r} must be a positive number, got {raw_weight!r}{hint}"
        )
    return name, weight


def _parse_definition(clause: str) -> RewardDef:
    """`NAME=KIND` or `NAME=KIND:SOURCE`, the whole clause."""
    head, _, rest = clause.partition("=")
    if "," in head or ":" in head:
        raise ValueError(
            f"ambiguous --reward {clause!r}: a definition NAME=KIND[:MODEL|URL] must be a "
            f"--reward of its own (or a '{CLAUSE_SEPARATOR}'-separated clause), never part "
            "of a list, because its model or URL may contain ',' and ':'; e.g. "
            "--reward shepherd=math-shepherd:/models/shepherd --reward shepherd,arithmetic"
        )
    name = head.strip()
    if not _NAME.match(name):
        raise ValueError(
            f"--reward {clause!r}: a reward name is letters, digits, '-', '_' and '.', got {name!r}"
        )
    if name in _RESERVED or name in WEIGHT_FREE:
        raise ValueError(
            f"--reward {clause!r}: {name!r} is reserved (a kind a list names "
            f"directly, {ENSEMBLE!r} or {NO_REWARD!r}); choose another name"
        )
    kind_name, _, raw_source = rest.partition(":")
    kind_name, source_text = kind_name.strip(), raw_source.strip()
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ValueError(
            f"--reward {clause!r}: unknown kind {kind_name!r}; write "
            f"NAME=KIND[:MODEL|URL] with a kind of: {', '.join(KINDS)}"
        )
    if kind.model == "none" and source_text:
        raise ValueError(
            f"--reward {clause!r}: kind {kind.name!r} takes no model; write {name}={kind.name}"
        )
    if kind.model == "required" and not source_text:
        raise ValueError(
            f"--reward {clause!r}: kind {kind.name!r} needs a model folder, id "
            f"or URL: {kind.usage.replace('NAME', name)}"
        )
    if not source_text:
        return RewardDef(name, kind.name)
    return RewardDef(name, kind.name, _check_source(clause, name, source_text))


def _check_source(clause: str, name: str, text: str) -> ModelSource:
    if "," in text:
        raise ValueError(
            f"ambiguous --reward {clause!r}: the model or URL of {name!r} contains ','; a "
            "definition takes one model and no list: give the list as its own --reward"
        )
    source = ModelSource.parse(text)
    tail = text
    if source.url is not None:
        parts = urlsplit(text)
        try:
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"--reward {clause!r}: {text!r} is not an http:// or https:// "
                "URL with a host (and a numeric port)"
            )
        tail = parts.path
    if _WEIGHT_SUFFIX.search(tail):
        raise ValueError(
            f"ambiguous --reward {clause!r}: {text!r} ends like a weight; a definition "
            f"takes no weight, a list does: --reward {name}=KIND:SOURCE --reward "
            f"{name}:0.5,arithmetic:0.5"
        )
    return source


def reward_names(spec: str, extra: Sequence[str] = ()) -> list[str]:
    """The selectable names of a `--reward` value (default first); unknown is an error."""
    return list(parse_reward_spec(spec, extra).choices)


async def open_reward_clients(
    spec: str,
    ctx: RewardContext,
    extra: Mapping[str, RewardDef | RewardModel] | None = None,
) -> dict[str, RewardModel]:
    """Build the rewards `spec` offers, default first, each through its kind's row.

    `extra` holds rewards defined outside the spec (the server's `prm`), as a
    definition to build or a client already built; they come after the spec's.
    What the builds open is registered with `ctx`; on failure the caller closes it.
    """
    extra = dict(extra or {})
    parsed = parse_reward_spec(spec, tuple(extra))
    definitions: dict[str, RewardDef | RewardModel] = {d.name: d for d in parsed.definitions}
    definitions.update(extra)
    order = list(parsed.names) + [name for name in definitions if name not in parsed.names]
    clients: dict[str, RewardModel] = {}
    for name in order:
        what = definitions.get(name, RewardDef(name, name))  # a weight-free kind by name
        if isinstance(what, RewardDef):
            clients[name] = await KINDS[what.kind].build(ctx, what)
        else:
            clients[name] = what
    rewards: dict[str, RewardModel] = {}
    if parsed.weights:
        rewards[ENSEMBLE] = WeightedEnsemble(
            [(clients[name], parsed.weights[name]) for name in parsed.names], ENSEMBLE
        )
    rewards.update(clients)
    return rewards


@dataclass(frozen=True)
class _PolicyOnly:
    """A context with the policy and no way to start backends (`build_rewards`)."""

    policy: Policy

    def prm_backend(self, name: str, source: ModelSource, pooling: bool) -> PRMBackend:
        raise ValueError(
            f"reward {name!r} needs a backend ({source}); the server starts "
            "it (server.rewards.open_rewards)"
        )

    async def judge_policy(self, name: str, source: ModelSource) -> Policy:
        raise ValueError(
            f"reward {name!r} needs a judge model ({source}); the server "
            "starts it (server.rewards.open_rewards)"
        )


def build_rewards(
    spec: str, policy: Policy, extra: Mapping[str, RewardModel] | None = None
) -> dict[str, RewardModel]:
    """`open_reward_clients` for rewards that need nothing but the policy.

    Weight-free kinds (and prebuilt `extra` clients) build without waiting on
    anything, so this runs the build to its end at once, in or out of an event loop.
    """
    build = open_reward_clients(spec, _PolicyOnly(policy), extra)
    try:
        build.send(None)
    except StopIteration as done:
        return done.value
    build.close()
    raise ValueError(
        f"--reward {spec!r} needs backends the server starts; use server.rewards.open_rewards"
    )
