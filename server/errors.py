"""Errors as answers: every failure becomes a JSON body in OpenAI's error format.

`{"error": {"message", "type", "param", "code"}}` on every route, so clients written
for OpenAI-compatible servers can read Ponder's errors too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import singledispatch
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from search_strategies.reward import RewardError
from server.policy.errors import PolicyRejected, PolicyUnavailable

log = logging.getLogger(__name__)


class InvalidRequest(Exception):
    """A request the client must fix; answered with 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    @classmethod
    def from_validation(
        cls,
        error: ValidationError | RequestValidationError,
        prefix: str = "",
        names: Mapping[str, str] | None = None,
    ) -> InvalidRequest:
        """One readable sentence per problem, naming the field (`n: must be ...`).

        `names` renames a top-level field to what the client called it.
        """
        problems = []
        first_param = None
        for item in error.errors():
            location = [str(part) for part in item["loc"] if part != "body"]
            if location and names:
                location[0] = names.get(location[0], location[0])
            param = prefix + ".".join(location) if location else None
            first_param = first_param or param
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown field"
            problems.append(f"{param}: {message}" if param else message)
        return cls("; ".join(problems) or "invalid request", first_param)


class ServerBusy(Exception):
    """Every search slot and queue place is taken; answered with 429 + Retry-After."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class ModelNotFound(Exception):
    """A model id the server does not serve; answered with 404 like OpenAI."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class OpenAIError:
    """An error as OpenAI sends it: the status and body of a JSON answer.

    A stream that has already begun (its status was 200) sends only the body, as
    an SSE event, so `body` must say everything on its own.
    """

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status_code, headers=self.headers)


@singledispatch
def openai_error(error: Exception) -> OpenAIError:
    """THE mapping from a failure to OpenAI's error, for JSON answers and streams alike.

    One function, so a failure reads the same whichever way it reaches the client
    (the two copies had drifted: the stream said `invalid_prompt` where the JSON
    said `context_length_exceeded`). Anything unforeseen is a 500 naming only its
    type, and is logged with its traceback.
    """
    log.error("unexpected error", exc_info=error)
    return OpenAIError(
        500, error_body(f"internal error: {type(error).__name__}", "server_error", None, None)
    )


@openai_error.register
def _invalid(error: InvalidRequest) -> OpenAIError:
    return OpenAIError(
        400, error_body(error.message, "invalid_request_error", error.param, "invalid_value")
    )


@openai_error.register
def _validation(error: RequestValidationError) -> OpenAIError:
    return _invalid(InvalidRequest.from_validation(error))


@openai_error.register
def _busy(error: ServerBusy) -> OpenAIError:
    return OpenAIError(
        429,
        error_body(error.message, "rate_limit_error", None, "server_busy"),
        {"Retry-After": str(error.retry_after_s)},
    )


@openai_error.register
def _rejected(error: PolicyRejected) -> OpenAIError:
    too_long = error.context_too_long
    return OpenAIError(
        400,
        error_body(
            f"the policy rejected the prompt: {error}",
            "invalid_request_error",
            "messages" if too_long else None,
            "context_length_exceeded" if too_long else "invalid_prompt",
        ),
    )


@openai_error.register
def _no_model(error: ModelNotFound) -> OpenAIError:
    return OpenAIError(
        404, error_body(error.message, "invalid_request_error", "model", "model_not_found")
    )


@openai_error.register
def _http(error: HTTPException) -> OpenAIError:
    kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
    return OpenAIError(
        error.status_code,
        error_body(str(error.detail), kind, None, None),
        getattr(error, "headers", None),
    )


@openai_error.register(PolicyUnavailable)
@openai_error.register(RewardError)
def _unavailable(error: Exception) -> OpenAIError:
    """A backend that cannot answer is the server's problem, not the client's."""
    code = "policy_unavailable" if isinstance(error, PolicyUnavailable) else "reward_unavailable"
    log.error("%s: %s", code, error)
    return OpenAIError(503, error_body(str(error), "service_unavailable", None, code))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every exception `openai_error` knows (and any other, as a 500) with it."""

    async def answer(_: Request, error: Exception) -> JSONResponse:
        return openai_error(error).response()

    # The registry's `object` entry is the fallback; Starlette wants `Exception`.
    for kind in (*(k for k in openai_error.registry if k is not object), Exception):
        app.add_exception_handler(kind, answer)
