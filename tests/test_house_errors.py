"""One failure, one OpenAI error, streamed or not (issue 14, item 8).

A chat request whose search fails must carry the same `type`, `code`, `param` and
`message` whether the error comes back as the JSON body or, with `stream: true`,
as the `{"error": ...}` event after the stream has begun. In-process app with a
policy that raises: seconds, no engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from search_strategies.protocols import Generation, SamplingConfig
from server.app import create_app
from server.errors import openai_error
from server.policy.errors import PolicyRejected, PolicyUnavailable
from server.settings import Settings
from tests.inprocess import StandInBackend
from tests.servers import free_port

MODEL = "scripted"
TOO_LONG = PolicyRejected(
    "the prompt is 5000 tokens, but the maximum model length (context) is 4096 tokens"
)


class FailingBackend(StandInBackend):
    """Renders chats like the scripted policy, and every generation fails with `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        raise self.error


def client_for(error: Exception, **settings) -> TestClient:
    async def factory(_: Settings) -> StandInBackend:
        return FailingBackend(error)

    # A 500 is re-raised by Starlette after its handler answered; read the answer.
    return TestClient(create_app(Settings(**settings), factory), raise_server_exceptions=False)


def plain_and_streamed(
    client: TestClient, body: dict, path: str = "/v1/chat/completions"
) -> tuple[dict, dict]:
    """The error object of the JSON answer and of the stream's error event (chat, or
    `/v1/solve`, whose stream names it `event: error`)."""
    plain = client.post(path, json=body)
    assert plain.status_code >= 400, plain.text
    with client.stream("POST", path, json={**body, "stream": True}) as stream:
        assert stream.status_code == 200  # the stream began before the search failed
        events = [
            json.loads(line.removeprefix("data: "))
            for line in stream.iter_lines()
            if line.startswith("data: {")
        ]
    errors = [event["error"] for event in events if "error" in event]
    assert len(errors) == 1, events
    return plain.json()["error"], errors[0]


def chat_body(**search) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "3 bags of 4?"}],
        "max_tokens": 16,
        **({"search": search} if search else {}),
    }


SOLVE_BODY = {"question": "3 bags of 4?", "max_new_tokens": 16}


@pytest.mark.parametrize(
    ("error", "code", "param"),
    [
        (TOO_LONG, "context_length_exceeded", "messages"),
        (PolicyRejected("bad token id"), "invalid_prompt", None),
        (PolicyUnavailable("vLLM engine died"), "policy_unavailable", None),
        (RuntimeError("boom"), None, None),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/solve"])
def test_a_policy_failure_reads_the_same_streamed_or_not(
    error: Exception, code: str | None, param: str | None, path: str
) -> None:
    body = chat_body() if path == "/v1/chat/completions" else SOLVE_BODY
    with client_for(error) as client:
        plain, streamed = plain_and_streamed(client, body, path)
    assert streamed == plain
    assert (plain["code"], plain["param"]) == (code, param)


def test_a_reward_failure_reads_the_same_streamed_or_not() -> None:
    """A dead remote PRM: `reward_unavailable` both ways (the stream said `backend_error`)."""
    dead = f"http://127.0.0.1:{free_port()}"
    scripted = StandInBackend()

    async def factory(_: Settings) -> StandInBackend:
        return scripted

    settings = Settings(prm_url=dead, prm_kind="qwen", prm_timeout_s=1.0)
    with TestClient(create_app(settings, factory)) as client:
        plain, streamed = plain_and_streamed(
            client, chat_body(n=2, selection="weighted", reward="prm")
        )
    assert streamed == plain
    assert (plain["type"], plain["code"]) == ("service_unavailable", "reward_unavailable")


def test_the_status_comes_with_the_body() -> None:
    """The JSON answer's status is the mapping's own (what the stream cannot send)."""
    assert openai_error(TOO_LONG).status_code == 400
    assert openai_error(PolicyUnavailable("down")).status_code == 503
    assert openai_error(RuntimeError("boom")).status_code == 500
