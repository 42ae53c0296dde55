"""API keys: `Authorization: Bearer KEY` on every route except the open ones.

A pure ASGI middleware rather than a FastAPI dependency, so that no route (present
or future, including `/docs` and unknown paths) can be left unprotected by mistake.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from server.errors import error_body


def load_api_keys(keys: Iterable[str], key_file: Path | None) -> tuple[str, ...]:
    """Keys from flags plus one per non-blank, non-`#` line of `key_file`."""
    found = [key for key in keys if key]
    if key_file is not None:
        for line in key_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(line)
    return tuple(dict.fromkeys(found))


class KeyChecker:
    """Compares a presented key with every accepted key in constant time.

    Both sides are hashed first, so neither the key's length nor the position of
    the first differing byte shows in the timing, and every key is compared (no
    early exit on a match).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys]

    def accepts(self, presented: str) -> bool:
        digest = hashlib.sha256(presented.encode()).digest()
        matched = False
        for accepted in self._digests:
            matched |= hmac.compare_digest(digest, accepted)
        return matched


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class ApiKeyMiddleware:
    """Answers 401 (OpenAI error format) unless the request carries an accepted key."""

    def __init__(self, app: ASGIApp, keys: Iterable[str], open_paths: Iterable[str]) -> None:
        self.app = app
        self.checker = KeyChecker(keys)
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is not None and self.checker.accepts(token):
            await self.app(scope, receive, send)
            return
        message = (
            "missing API key: send 'Authorization: Bearer YOUR_KEY'"
            if token is None
            else "invalid API key"
        )
        response = JSONResponse(
            error_body(message, "invalid_request_error", None, "invalid_api_key"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
