"""Errors as answers: every failure becomes a JSON body in OpenAI's error format.

`{"error": {"message", "type", "param", "code"}}` on every route, so clients written
for OpenAI-compatible servers can read Ponder's errors too.
"""

from __future__ import annotations

import logging
from typing import Mapping

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
    ) -> "InvalidRequest":
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


def error_body(message: str, kind: str, param: str | None, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def _invalid(_: Request, error: InvalidRequest) -> JSONResponse:
        return JSONResponse(
            error_body(error.message, "invalid_request_error", error.param, "invalid_value"),
            status_code=400,
        )

    @app.exception_handler(ServerBusy)
    async def _busy(_: Request, error: ServerBusy) -> JSONResponse:
        return JSONResponse(
            error_body(error.message, "rate_limit_error", None, "server_busy"),
            status_code=429,
            headers={"Retry-After": str(error.retry_after_s)},
        )

    @app.exception_handler(PolicyRejected)
    async def _rejected(_: Request, error: PolicyRejected) -> JSONResponse:
        too_long = error.context_too_long
        return JSONResponse(
            error_body(
                f"the policy rejected the prompt: {error}",
                "invalid_request_error",
                "messages" if too_long else None,
                "context_length_exceeded" if too_long else "invalid_prompt",
            ),
            status_code=400,
        )

    @app.exception_handler(ModelNotFound)
    async def _no_model(_: Request, error: ModelNotFound) -> JSONResponse:
        return JSONResponse(
            error_body(error.message, "invalid_request_error", "model", "model_not_found"),
            status_code=404,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return await _invalid(request, InvalidRequest.from_validation(error))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, error: HTTPException) -> JSONResponse:
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            error_body(str(error.detail), kind, None, None),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(
            error_body(f"internal error: {type(error).__name__}", "server_error", None, None),
            status_code=500,
        )

    async def _unavailable(_: Request, error: Exception) -> JSONResponse:
        """A backend that cannot answer is the server's problem, not the client's."""
        code = (
            "policy_unavailable" if isinstance(error, PolicyUnavailable) else "reward_unavailable"
        )
        log.error("%s: %s", code, error)
        return JSONResponse(
            error_body(str(error), "service_unavailable", None, code), status_code=503
        )

    app.add_exception_handler(PolicyUnavailable, _unavailable)
    app.add_exception_handler(RewardError, _unavailable)
