"""One table of reward kinds, the `--reward` grammar, and several named learned PRMs.

The table (`reward_clients.registry.KINDS`) builds every reward and gives the CLI help
and validation; `--reward NAME=KIND[:MODEL|URL]` defines as many named rewards as
wanted. Fake PRM backends stand in for vLLM engines and remote servers (they are put
in place of `server.rewards.start_prm_backend`), so no engine starts here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from reward_clients.arithmetic import ArithmeticVerifier
from reward_clients.combinators import Renamed, WeightedEnsemble
from reward_clients.learned_prm import QwenPRM, TokenLogitPRM
from reward_clients.prm_formats import QWEN_STEP_TAG, SHEPHERD_STEP_TAG
from reward_clients.registry import (
    ENSEMBLE,
    KINDS,
    ModelSource,
    RewardDef,
    build_rewards,
    kinds_help,
    open_reward_clients,
    parse_reward_spec,
)
from reward_clients.self_judge import SelfJudge
from search_strategies.protocols import ChatMessage, Policy
from search_strategies.reward import RewardUnavailable
from server import rewards as server_rewards
from server.rewards import open_rewards, validate_reward_settings
from server.settings import Settings, add_settings_arguments, settings_from
from tests.fakes import ScriptedPolicy
from tests.inprocess import StandInBackend, serve_in_thread

_SPECIAL = {QWEN_STEP_TAG: 1, SHEPHERD_STEP_TAG: 2}
_SPLIT = re.compile("(" + "|".join(re.escape(tag) for tag in _SPECIAL) + ")")


def tokenize(text: str) -> list[int]:
    """The step tags are one token each; every other character is one token."""
    return [
        tok
        for part in _SPLIT.split(text)
        for tok in ([_SPECIAL[part]] if part in _SPECIAL else [1000 + ord(c) for c in part])
    ]


@dataclass
class FakePRMBackend:
    """A `PRMBackend` that gives every step the same P(right)."""

    name: str
    source: ModelSource
    pooling: bool
    good: float = 0.8
    healthy: bool = True
    closed: bool = False
    calls: int = 0

    @property
    def description(self) -> str:
        return f"reward backend {self.name!r} (fake, {self.source})"

    async def render_chat(self, messages: Sequence[ChatMessage], add_generation_prompt: bool):
        return tokenize("\n".join(m.content for m in messages))

    async def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return tokenize(text)

    async def classify_steps(self, prompts, step_tag_id: int):
        assert self.pooling, "a Qwen PRM needs the pooling runner"
        self.calls += 1
        return [[[1 - self.good, self.good]] * list(p).count(step_tag_id) for p in prompts]

    async def label_logprobs(self, prompts, label_ids):
        assert not self.pooling, "a token-logit PRM needs a generating engine"
        self.calls += 1
        return [[math.log(self.good), math.log(1 - self.good)] for _ in prompts]

    async def check_health(self) -> None:
        if not self.healthy:
            raise RewardUnavailable(f"{self.description} is down")

    async def close(self) -> None:
        self.closed = True


@dataclass
class FakeContext:
    """A `RewardContext` that records what it was asked to open."""

    policy: Policy = field(default_factory=lambda: ScriptedPolicy(["yes"]))
    backends: dict[str, FakePRMBackend] = field(default_factory=dict)
    judges: dict[str, tuple[ModelSource, Policy]] = field(default_factory=dict)

    def prm_backend(self, name: str, source: ModelSource, pooling: bool) -> FakePRMBackend:
        self.backends[name] = FakePRMBackend(name, source, pooling)
        return self.backends[name]

    async def judge_policy(self, name: str, source: ModelSource) -> Policy:
        judge = ScriptedPolicy(["no"], model_name=f"judge-{name}")
        self.judges[name] = (source, judge)
        return judge


def parse_flags(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from(parser.parse_args(argv), env or {})


def flag_help() -> dict[str, str]:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return {action.dest: action.help or "" for action in parser._actions}


# --- the table generates the help -------------------------------------------------


def test_the_table_generates_the_help_for_every_kind() -> None:
    assert list(KINDS) == ["arithmetic", "self-judge", "qwen", "math-shepherd", "rlhflow"]
    helps = flag_help()
    for kind in KINDS.values():
        assert kind.usage in kinds_help() and kind.summary in kinds_help()
        assert kind.usage in helps["reward"], kind.name
        assert kind.name in helps["prm_kind"], kind.name
    assert "NAME=qwen:MODEL|URL" in helps["reward"]
    assert "NAME=self-judge[:MODEL|URL]" in helps["reward"]
    assert "NAME=arithmetic:" in helps["reward"]  # takes no model: no [:MODEL|URL]


def test_the_table_validates_every_kind() -> None:
    """Every row's model need is enforced by the parser, from the row alone."""
    for kind in KINDS.values():
        with_model = f"r={kind.name}:/models/x"
        without = f"r={kind.name}"
        if kind.model == "required":
            parse_reward_spec(with_model)
            with pytest.raises(ValueError, match="needs a model"):
                parse_reward_spec(without)
            with pytest.raises(ValueError, match="needs a model"):
                parse_reward_spec(kind.name)
        elif kind.model == "none":
            parse_reward_spec(without)
            with pytest.raises(ValueError, match="takes no model"):
                parse_reward_spec(with_model)
        else:
            parse_reward_spec(without)
            parse_reward_spec(with_model)


# --- parsing: every form --------------------------------------------------------


def q(name: str, kind: str, model: str | None = None, url: str | None = None) -> RewardDef:
    return RewardDef(name, kind, ModelSource(model, url) if (model or url) else None)


@pytest.mark.parametrize(
    ("spec", "choices", "definitions"),
    [
        ("", (), ()),
        ("none", (), ()),
        ("arithmetic", ("arithmetic",), ()),
        ("self-judge, arithmetic", ("self-judge", "arithmetic"), ()),
        ("arithmetic:0.5,self-judge:0.5", (ENSEMBLE, "arithmetic", "self-judge"), ()),
        ("verifier=arithmetic", ("verifier",), (q("verifier", "arithmetic"),)),
        ("j=self-judge", ("j",), (q("j", "self-judge"),)),
        ("j=self-judge:/models/judge", ("j",), (q("j", "self-judge", "/models/judge"),)),
        ("j=self-judge:http://h:8003/v1", ("j",), (q("j", "self-judge", url="http://h:8003/v1"),)),
        (
            "shepherd=math-shepherd:/models/math-shepherd-mistral-7b-prm",
            ("shepherd",),
            (q("shepherd", "math-shepherd", "/models/math-shepherd-mistral-7b-prm"),),
        ),
        (
            "qwen=qwen:http://127.0.0.1:8002",
            ("qwen",),
            (q("qwen", "qwen", url="http://127.0.0.1:8002"),),
        ),
        (
            "hf=qwen:Qwen/Qwen2.5-Math-PRM-7B",
            ("hf",),
            (q("hf", "qwen", "Qwen/Qwen2.5-Math-PRM-7B"),),
        ),
        (
            "r = rlhflow : https://prm.example/v1 ",
            ("r",),
            (q("r", "rlhflow", url="https://prm.example/v1"),),
        ),
        # Without a list the definitions are the choices, the first the default.
        (
            "verifier=arithmetic; shepherd=math-shepherd:/m/s; qwen=qwen:http://h:1",
            ("verifier", "shepherd", "qwen"),
            (
                q("verifier", "arithmetic"),
                q("shepherd", "math-shepherd", "/m/s"),
                q("qwen", "qwen", url="http://h:1"),
            ),
        ),
        # A list orders (its first is the default); unlisted definitions come after it.
        (
            "q=qwen:/m/q; s=math-shepherd:/m/s; arithmetic,s",
            ("arithmetic", "s", "q"),
            (q("q", "qwen", "/m/q"), q("s", "math-shepherd", "/m/s")),
        ),
        # The list may come before the definitions it names.
        ("q,arithmetic; q=qwen:/m/q", ("q", "arithmetic"), (q("q", "qwen", "/m/q"),)),
        # Weights for named PRMs: in a list.
        (
            "q=qwen:/m/q; s=math-shepherd:/m/s; q:0.7,s:0.3",
            (ENSEMBLE, "q", "s"),
            (q("q", "qwen", "/m/q"), q("s", "math-shepherd", "/m/s")),
        ),
        # A learned kind's name may name a reward of it (a bare list item cannot be one).
        (
            "qwen=qwen:http://h:1; qwen,arithmetic",
            ("qwen", "arithmetic"),
            (q("qwen", "qwen", url="http://h:1"),),
        ),
        # Several lists are one list.
        ("arithmetic; self-judge", ("arithmetic", "self-judge"), ()),
        ("prm:2,arithmetic:1", (ENSEMBLE, "prm", "arithmetic"), ()),
    ],
)
def test_every_form_parses(spec: str, choices: tuple[str, ...], definitions) -> None:
    parsed = parse_reward_spec(spec, ("prm",))
    assert parsed.choices == choices
    assert parsed.definitions == definitions


def test_weights_of_named_prms() -> None:
    parsed = parse_reward_spec("q=qwen:/m/q; s=math-shepherd:/m/s; q:0.7,s:0.3")
    assert dict(parsed.weights) == {"q": 0.7, "s": 0.3}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        # A definition inside a list: its source may contain ',' and ':'.
        ("arithmetic,q=qwen:/m", "ambiguous.*must be a --reward of its own"),
        ("arithmetic:1,q=qwen:/m", "ambiguous.*must be a --reward of its own"),
        ("q=qwen:/m,arithmetic", "ambiguous.*contains ','"),
        ("q=qwen:/models/q:0.5", "ambiguous.*ends like a weight"),
        ("q=qwen:http://h:8002/v1:0.5", "ambiguous.*ends like a weight"),
        ("q=qwen:http://h:8002:0.5", "not an http:// or https:// URL"),
        ("q=qwen:ftp://h/prm", "not an http:// or https:// URL"),
        ("q=qwen:http://", "not an http:// or https:// URL"),
        ("q=qwen", "kind 'qwen' needs a model folder, id or URL: q=qwen:MODEL|URL"),
        ("q=qwen:", "needs a model"),
        ("v=arithmetic:/models/v", "kind 'arithmetic' takes no model"),
        ("q=oracle:/m", "unknown kind 'oracle'"),
        ("q=/models/q", "unknown kind '/models/q'"),
        ("qwen", "reward kind 'qwen' needs a model: define a named reward"),
        ("qwen:/models/q", "to give kind 'qwen' a model, define a named reward"),
        ("arithmetic=qwen:/m", "'arithmetic' is reserved"),
        ("self-judge=self-judge:/m", "'self-judge' is reserved"),
        ("ensemble=qwen:/m", "'ensemble' is reserved"),
        ("none=qwen:/m", "'none' is reserved"),
        ("my prm=qwen:/m", "a reward name is"),
        ("=qwen:/m", "a reward name is"),
        ("q=qwen:/m; q=qwen:/n", "'q' is defined twice"),
        ("none; q=qwen:/m", "'none' means no reward"),
        ("none,arithmetic", "'none' means no reward"),
        ("q=qwen:/m; q:1,arithmetic", "not a mix"),
        ("q=qwen:/m; q,q", "listed twice"),
        ("shepherd,arithmetic", "unknown reward 'shepherd'"),
        ("arithmetic:0", "must be a positive number"),
        ("prm", "unknown reward 'prm'"),
    ],
)
def test_bad_specs_say_what_to_fix(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_reward_spec(spec)


def test_a_name_defined_by_the_prm_flags_cannot_be_defined_again() -> None:
    with pytest.raises(ValueError, match="'prm' is defined twice.*--prm"):
        parse_reward_spec("prm=qwen:/m", ("prm",))
    with pytest.raises(ValueError, match="'prm' is defined twice"):
        validate_reward_settings(Settings(prm="/m/a", reward="prm=qwen:/m/b"))
    # Without the --prm flags, `prm` is a name like any other.
    assert parse_reward_spec("prm=qwen:/m; prm,arithmetic").choices == ("prm", "arithmetic")


def test_repeated_flags_and_the_environment_are_clauses() -> None:
    argv = [
        "--reward",
        "verifier=arithmetic",
        "--reward",
        "shepherd=math-shepherd:/m/s",
        "--reward",
        "qwen=qwen:http://127.0.0.1:8002/v1",
    ]
    expected = ("verifier", "shepherd", "qwen")
    assert validate_reward_settings(parse_flags(argv)).choices == expected
    env = {
        "PONDER_REWARD": "verifier=arithmetic; shepherd=math-shepherd:/m/s; "
        "qwen=qwen:http://127.0.0.1:8002/v1"
    }
    assert validate_reward_settings(parse_flags([], env)).choices == expected
    # A flag still beats the environment, and one --reward is kept as given.
    assert parse_flags(["--reward", "arithmetic,self-judge"], env).reward == "arithmetic,self-judge"


def test_the_prm_flags_keep_working_beside_named_prms() -> None:
    settings = parse_flags(
        [
            "--prm",
            "/m/prm",
            "--prm-kind",
            "math-shepherd",
            "--reward",
            "q=qwen:/m/q",
            "--reward",
            "prm:1,q:1",
        ]
    )
    assert validate_reward_settings(settings).choices == (ENSEMBLE, "prm", "q")
    assert server_rewards.prm_definition(settings) == q("prm", "math-shepherd", "/m/prm")
    remote = Settings(prm="served-name", prm_url="http://h:8002")
    assert server_rewards.prm_definition(remote) == q("prm", "qwen", "served-name", "http://h:8002")


# --- building: several named PRMs, distinct clients --------------------------------


def test_several_named_prms_build_distinct_clients() -> None:
    ctx = FakeContext()
    spec = (
        "a=qwen:/m/a; b=qwen:http://h:1/v1; c=math-shepherd:/m/c; d=rlhflow:http://h:2; "
        "j=self-judge:/m/j; p=self-judge; v=arithmetic; a:1,c:3"
    )
    rewards = asyncio.run(open_reward_clients(spec, ctx))
    assert list(rewards) == [ENSEMBLE, "a", "c", "b", "d", "j", "p", "v"]
    assert [r.name for r in rewards.values()] == list(rewards)
    a, b, c, d = (rewards[n] for n in "abcd")
    assert isinstance(a, QwenPRM) and isinstance(b, QwenPRM)
    assert isinstance(c, TokenLogitPRM) and c.format == "math-shepherd"
    assert isinstance(d, TokenLogitPRM) and d.format == "rlhflow"
    assert [x.backend for x in (a, b, c, d)] == [ctx.backends[n] for n in "abcd"]
    assert len({id(x.backend) for x in (a, b, c, d)}) == 4
    assert {n: (b.source, b.pooling) for n, b in ctx.backends.items()} == {
        "a": (ModelSource("/m/a"), True),
        "b": (ModelSource(url="http://h:1/v1"), True),
        "c": (ModelSource("/m/c"), False),
        "d": (ModelSource(url="http://h:2"), False),
    }
    # A self-judge with a model asks its own judge; without one, the policy.
    assert ctx.judges["j"][0] == ModelSource("/m/j") and set(ctx.judges) == {"j"}
    assert isinstance(rewards["j"], Renamed) and isinstance(rewards["j"].inner, SelfJudge)
    assert rewards["j"].inner._policy is ctx.judges["j"][1]
    assert rewards["p"].inner._policy is ctx.policy
    assert isinstance(rewards["v"].inner, ArithmeticVerifier)
    ensemble = rewards[ENSEMBLE]
    assert isinstance(ensemble, WeightedEnsemble)
    assert ensemble.members == [(a, 1.0), (c, 3.0)]


def test_named_prms_score_through_their_own_backends() -> None:
    ctx = FakeContext()
    rewards = asyncio.run(open_reward_clients("a=qwen:/m/a; c=math-shepherd:/m/c", ctx))
    ctx.backends["a"].good, ctx.backends["c"].good = 0.9, 0.2
    solutions = [["3 * 4 = 12", "The answer is 12."], ["3 + 4 = 7"]]
    assert asyncio.run(rewards["a"].score("3 bags of 4?", solutions)) == [
        [pytest.approx(0.9)] * 2,
        [pytest.approx(0.9)],
    ]
    assert asyncio.run(rewards["c"].score("3 bags of 4?", solutions)) == [
        [pytest.approx(0.2)] * 2,
        [pytest.approx(0.2)],
    ]
    assert ctx.backends["a"].calls == 1 and ctx.backends["c"].calls == 1


def test_build_rewards_without_a_server_refuses_learned_kinds() -> None:
    with pytest.raises(ValueError, match="needs a backend"):
        build_rewards("q=qwen:/m/q", ScriptedPolicy(["yes"]))
    rewards = build_rewards("verifier=arithmetic; arithmetic", ScriptedPolicy(["yes"]))
    assert list(rewards) == ["arithmetic", "verifier"]


@pytest.fixture()
def fake_backends(monkeypatch: pytest.MonkeyPatch) -> list[FakePRMBackend]:
    """Every PRM backend the server starts, in order; fakes instead of vLLM or httpx."""
    started: list[FakePRMBackend] = []

    def start(settings: Settings, name: str, source: ModelSource, pooling: bool):
        started.append(FakePRMBackend(name, source, pooling, good=0.9 if pooling else 0.3))
        return started[-1]

    monkeypatch.setattr(server_rewards, "start_prm_backend", start)
    return started


def test_the_server_registers_close_and_health_per_named_prm(fake_backends) -> None:
    settings = Settings(
        reward="shep=math-shepherd:/m/s; qwen=qwen:http://h:1; arithmetic", prm="/m/legacy"
    )

    async def scenario():
        opened = await open_rewards(settings, ScriptedPolicy(["yes"]))
        fake_backends[1].healthy = False
        health = await opened.health()
        await opened.close()
        return opened, health

    opened, health = asyncio.run(scenario())
    assert list(opened.clients) == ["arithmetic", "shep", "qwen", "prm"]
    assert [(b.name, b.source, b.pooling) for b in fake_backends] == [
        ("shep", ModelSource("/m/s"), False),
        ("qwen", ModelSource(url="http://h:1"), True),
        ("prm", ModelSource("/m/legacy"), True),
    ]
    assert health["shep"] == "ok" and health["prm"] == "ok"
    assert health["qwen"].startswith("unavailable: ") and "'qwen'" in health["qwen"]
    assert all(b.closed for b in fake_backends)


def test_a_failing_start_closes_what_was_started(fake_backends, monkeypatch) -> None:
    start = server_rewards.start_prm_backend

    def second_fails(settings, name, source, pooling):
        if fake_backends:
            raise RuntimeError(f"no memory for {name}")
        return start(settings, name, source, pooling)

    monkeypatch.setattr(server_rewards, "start_prm_backend", second_fails)
    settings = Settings(reward="a=qwen:/m/a; b=qwen:/m/b")
    with pytest.raises(RuntimeError, match="no memory for b"):
        asyncio.run(open_rewards(settings, ScriptedPolicy(["yes"])))
    assert len(fake_backends) == 1 and fake_backends[0].closed


# --- the in-process app: both named PRMs selectable and on /health -----------------

ANSWERS = ["3 * 4 = 12\n\nThe answer is \\boxed{12}.", "3 + 4 = 7\n\nThe answer is \\boxed{7}."]


def test_two_named_prms_are_selectable_and_on_health_in_the_app(fake_backends) -> None:
    settings = Settings(
        reward="verifier=arithmetic; shepherd=math-shepherd:/models/shepherd; "
        "qwen=qwen:http://127.0.0.1:9/v1"
    )
    backend = StandInBackend(ScriptedPolicy(ANSWERS))
    with serve_in_thread(settings, backend) as url, httpx.Client(base_url=url, timeout=30) as http:
        health = http.get("/health").json()
        bodies = {}
        for name in ("shepherd", "qwen", "verifier"):
            response = http.post(
                "/v1/solve",
                json={
                    "question": "3 bags of 4?",
                    "n": 2,
                    "selection": "max_reward",
                    "reward": name,
                },
            )
            assert response.status_code == 200, response.text
            bodies[name] = response.json()
        default = http.post(
            "/v1/solve", json={"question": "3 bags of 4?", "n": 2, "selection": "max_reward"}
        ).json()
        unknown = http.post("/v1/solve", json={"question": "q", "reward": "oracle"})
        fake_backends[0].healthy = False
        degraded = http.get("/health").json()
    assert health["status"] == "ok" and health["rewards"] == {"shepherd": "ok", "qwen": "ok"}
    assert [(b.name, b.pooling) for b in fake_backends] == [("shepherd", False), ("qwen", True)]
    assert all(b.calls == 1 for b in fake_backends)
    for name, value in (("shepherd", 0.3), ("qwen", 0.9)):
        assert bodies[name]["reward"] == name and bodies[name]["reward_error"] is None
        assert [c["score"] for c in bodies[name]["candidates"]] == [pytest.approx(value)] * 2
    assert bodies["verifier"]["answer"] == "12"
    assert default["reward"] == "verifier"  # the first definition is the default
    assert unknown.status_code == 400
    assert "configured: verifier, shepherd, qwen" in unknown.json()["error"]["message"]
    assert degraded["status"] == "degraded" and degraded["rewards"]["qwen"] == "ok"
    assert degraded["rewards"]["shepherd"].startswith("unavailable: ")
    assert all(b.closed for b in fake_backends)  # the lifespan closed both


def test_named_remote_prms_are_real_remote_backends_named_in_errors() -> None:
    """No fakes: two named remote PRMs at dead ports, each failing under its own name."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from tests.servers import free_port

    urls = {name: f"http://127.0.0.1:{free_port()}" for name in ("left", "right")}
    settings = Settings(
        reward="; ".join(f"{n}=qwen:{u}" for n, u in urls.items()), prm_timeout_s=1.0
    )

    async def policy(_: Settings) -> StandInBackend:
        return StandInBackend(ScriptedPolicy(ANSWERS))

    with TestClient(create_app(settings, policy)) as client:
        health = client.get("/health").json()
        errors = {
            name: client.post(
                "/v1/solve", json={"question": "q", "n": 2, "selection": "weighted", "reward": name}
            )
            for name in urls
        }
    assert health["status"] == "degraded" and set(health["rewards"]) == set(urls)
    for name, url in urls.items():
        assert errors[name].status_code == 503
        assert (
            f"reward backend {name!r} (remote PRM at {url}) unreachable"
            in errors[name].json()["error"]["message"]
        )


def test_ponder_serve_refuses_an_ambiguous_spec_before_any_engine(capsys) -> None:
    from server.cli import main

    assert main(["serve", "--reward", "arithmetic,q=qwen:/models/q"]) == 2
    assert "invalid setting: ambiguous --reward" in capsys.readouterr().err
    assert main(["serve", "--reward", "q=qwen"]) == 2
    assert "kind 'qwen' needs a model" in capsys.readouterr().err
