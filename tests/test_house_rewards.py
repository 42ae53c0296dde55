"""The default server serves every model id it lists (issue 14, item 1).

`ponder serve` with no `--reward` offers the weight-free arithmetic verifier, so
`@beam_search` and friends answer; a server started with `--reward none` offers no
reward and so does not list the strategies that need one (they stay a clear 400).
In-process app with a scripted policy: seconds, no engine.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from reward_clients.registry import RewardSpec, parse_reward_spec
from server.app import create_app
from server.rewards import reward_spec
from server.settings import Settings, add_settings_arguments, settings_from
from tests.fakes import ScriptedPolicy
from tests.inprocess import StandInBackend

MODEL = "scripted"
NEED_A_REWARD = ("beam_search", "dvts", "mcts", "revision")


def client_for(settings: Settings) -> TestClient:
    async def factory(_: Settings) -> StandInBackend:
        return StandInBackend(ScriptedPolicy(["3 * 4 = 12\n\nThe answer is \\boxed{12}."]))

    return TestClient(create_app(settings, factory))


@pytest.fixture()
def default_server() -> Iterator[TestClient]:
    with client_for(Settings()) as client:
        yield client


@pytest.fixture()
def rewardless_server() -> Iterator[TestClient]:
    with client_for(Settings(reward="none")) as client:
        yield client


def chat(client: TestClient, model: str):
    return client.post(
        "/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "3 bags of 4?"}],
            "max_tokens": 32,
            "search": {"budget": {"max_tokens": 256}},
        },
    )


def listed(client: TestClient) -> list[str]:
    return [card["id"] for card in client.get("/v1/models").json()["data"]]


def parse_flags(argv: list[str], env: dict[str, str]) -> Settings:
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    return settings_from(parser.parse_args(argv), env)


def test_the_default_reward_is_the_arithmetic_verifier() -> None:
    assert reward_spec(parse_flags([], {})) == "arithmetic"


def test_a_configured_prm_stays_the_default_reward_when_reward_is_unset() -> None:
    assert reward_spec(Settings(prm="/models/prm")) == "prm,arithmetic"
    assert reward_spec(Settings(prm="/models/prm", reward="arithmetic")) == "arithmetic"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--reward", "none"], {}),
        (["--reward", ""], {}),
        ([], {"PONDER_REWARD": "none"}),
        ([], {"PONDER_REWARD": ""}),
    ],
)
def test_none_or_empty_means_no_reward(argv: list[str], env: dict[str, str]) -> None:
    assert parse_reward_spec(reward_spec(parse_flags(argv, env))) == RewardSpec()


def test_none_cannot_be_combined_with_rewards() -> None:
    with pytest.raises(ValueError, match="'none'"):
        parse_reward_spec("none,arithmetic")


def test_the_default_server_answers_every_model_id_it_lists(default_server) -> None:
    ids = listed(default_server)
    assert {f"{MODEL}@{name}" for name in NEED_A_REWARD} <= set(ids)
    for model in ids:
        response = chat(default_server, model)
        assert response.status_code == 200, (model, response.text)


def test_a_server_without_reward_lists_only_what_it_can_run(rewardless_server) -> None:
    assert listed(rewardless_server) == [MODEL, f"{MODEL}@best_of_n"]
    for model in listed(rewardless_server):
        assert chat(rewardless_server, model).status_code == 200


@pytest.mark.parametrize("strategy", NEED_A_REWARD)
def test_a_server_without_reward_refuses_them_with_a_clear_400(
    rewardless_server, strategy: str
) -> None:
    response = chat(rewardless_server, f"{MODEL}@{strategy}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model" and "needs a reward model" in error["message"]
