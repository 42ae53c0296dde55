"""One JSON log line per request, a request id echoed in `X-Request-ID`, request metrics.

The middleware opens a record for the request in a context variable; the service
adds what the search did (strategy, budget, spend, stop reason) to the same record,
because tasks started for the request inherit the context. The line is written when
the last byte has been sent, so a streamed answer is logged with its full latency.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.metrics import PonderMetrics

if TYPE_CHECKING:
    from server.service import SearchRun

REQUEST_ID_HEADER = "x-request-id"
#: A client's own request id is echoed only if it is short and plain.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_log = logging.getLogger("ponder.access")
_record: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ponder_request_record", default=None
)


def current_request_id() -> str | None:
    record = _record.get()
    return record["request_id"] if record else None


def note_search(run: SearchRun) -> None:
    """Add one finished search to the current request's log record (n>1: summed)."""
    record = _record.get()
    if record is None:
        return
    usage = run.result.usage
    record["strategy"] = run.strategy
    record["budget"] = run.budget
    spent = record.setdefault("spent", {})
    for key, value in usage.as_dict().items():
        spent[key] = spent.get(key, 0) + value
    record.setdefault("stopped_reason", []).append(run.result.stopped_reason.value)


def mark_request(key: str, value: Any) -> None:
    """Add a field to the current request's log line (e.g. a stream the client closed)."""
    record = _record.get()
    if record is not None:
        record[key] = value


def configure_access_log() -> None:
    """Access lines are bare JSON on stderr (no prefix), so log shippers can parse them."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


class RequestLogMiddleware:
    """Assigns the request id, times the request, logs it and counts it."""

    def __init__(self, app: ASGIApp, metrics: PonderMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        record: dict[str, Any] = {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
        }
        token = _record.set(record)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _record.reset(token)
            latency = time.monotonic() - started
            record.update(status=status, latency_s=round(latency, 4))
            strategy = record.get("strategy", "none")
            self.metrics.observe_request(scope["path"], strategy, status, latency)
            access_log.info(json.dumps(record, separators=(",", ":")))


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            return candidate if _SAFE_ID.match(candidate) else None
    return None
