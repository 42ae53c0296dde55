"""Which search an engine call belongs to, for routers that keep a search on one replica.

Every engine call of one search shares the question's prefix, and beam search and MCTS
calls share whole paths, so a router that spreads them over replicas recomputes that
prefix on each. A router with session affinity (vLLM's router, `--policy
consistent_hash`, hashes the `X-Session-ID` header) keeps calls with the same key on
one replica. The service opens a session per search (`search_session`); the remote
policy reads it (`current_search_id`) and sends it in the header it was configured
with. A context variable carries it, so the strategies, which must not know about
HTTP, pass nothing, and the tasks a search spawns inherit it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_SEARCH_ID: ContextVar[str | None] = ContextVar("ponder_search_id", default=None)


@contextmanager
def search_session() -> Iterator[str]:
    """A fresh search id for the engine calls made inside this block."""
    search_id = uuid.uuid4().hex
    token = _SEARCH_ID.set(search_id)
    try:
        yield search_id
    finally:
        _SEARCH_ID.reset(token)


def current_search_id() -> str | None:
    """The id of the search this call belongs to (None outside a search)."""
    return _SEARCH_ID.get()
