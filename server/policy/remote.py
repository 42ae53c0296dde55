"""A policy served by a remote OpenAI-compatible completions server (`vllm serve`).

Prompts go out as token-id lists (`/v1/completions` accepts them) and samples come
back with their token ids (`return_token_ids`), so search keeps exact ids end to
end. Chat rendering uses the server's own `/tokenize` with `messages`, so Ponder
needs no local copy of the tokenizer.

Behind a router (a fleet of replicas, docs/deployment.md), two things matter: each
call carries its search's id in a header (`session_header`), so a router with
session affinity keeps the search on one replica's prefix cache; and a call that
failed before any answer came back (the connection broke, or the router said its
replica was unreachable: 500, 502, 503, 504) is sent once more, which the router routes
to a live replica. Seeded sampling makes the retry draw what the first try would
have drawn, so a search survives a replica's death mid-run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from search_strategies.protocols import ChatMessage, Completion, Generation, SamplingConfig
from server.policy.errors import PolicyRejected, PolicyUnavailable
from server.policy.session import current_search_id

#: A router's answers that mean "the replica is gone, not your request is wrong"
#: (vLLM's router answers 500 "Request failed" when it cannot reach the replica).
_GATEWAY_ERRORS = frozenset({500, 502, 503, 504})


class RemotePolicy:
    """A `Policy` over HTTP; every call has a timeout and fails as `PolicyUnavailable`,
    or as `PolicyRejected` when the remote server refuses the request itself (a 400,
    such as a prompt longer than its context), which the client can fix."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        model: str,
        session_header: str | None = None,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._root = self._base.removesuffix("/v1")
        self._model = model
        self._session_header = session_header
        #: Calls sent a second time after a connection or gateway error (metrics, tests).
        self.retries = 0

    @classmethod
    async def connect(
        cls,
        base_url: str,
        model: str | None = None,
        timeout_s: float = 300.0,
        session_header: str | None = None,
    ) -> RemotePolicy:
        """Open a client and learn the served model's name when not given."""
        client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10.0))
        policy = cls(client, base_url, model or "", session_header)
        if not model:
            try:
                body = await policy._request("GET", f"{policy._base}/models")
                policy._model = body["data"][0]["id"]
            except BaseException:
                await client.aclose()
                raise
        return policy

    @property
    def model_name(self) -> str:
        return self._model

    async def encode_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        continuing = bool(messages) and messages[-1].role == "assistant"
        body = await self._request(
            "POST",
            f"{self._root}/tokenize",
            json={
                "model": self._model,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                # vLLM's /tokenize: an assistant turn last is continued, not closed.
                "add_generation_prompt": not continuing,
                "continue_final_message": continuing,
                "add_special_tokens": False,
            },
        )
        return list(body["tokens"])

    async def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingConfig
    ) -> list[Generation]:
        """All prompts and samples in one completions request."""
        payload: dict[str, Any] = {
            "model": self._model,
            "prompt": [list(p) for p in prompts],
            "n": params.n,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "logprobs": params.top_logprobs,
            "return_token_ids": True,
            "include_stop_str_in_output": params.include_stop,
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.stop:
            payload["stop"] = list(params.stop)
        body = await self._request("POST", f"{self._base}/completions", json=payload)
        choices = sorted(body["choices"], key=lambda c: c["index"])
        if len(choices) != len(prompts) * params.n:
            raise PolicyUnavailable(
                f"remote policy returned {len(choices)} choices for "
                f"{len(prompts)} prompts x n={params.n}"
            )
        cached = ((body.get("usage") or {}).get("prompt_tokens_details") or {}).get(
            "cached_tokens"
        ) or 0
        generations = []
        for index, prompt in enumerate(prompts):
            mine = choices[index * params.n : (index + 1) * params.n]
            generations.append(
                Generation(
                    prompt_tokens=len(prompt),
                    completions=tuple(_completion(c, params.top_logprobs > 0) for c in mine),
                    # The server reports cache hits for the whole call only.
                    cached_prompt_tokens=cached if index == 0 else 0,
                )
            )
        return generations

    async def check_health(self) -> str | None:
        """The remote's /health; behind vLLM's router, the router's view of its
        replicas instead: its /health fails as soon as one replica is down, while
        the fleet still serves, so Ponder is unavailable only when none is healthy."""
        view = await self._router_view()
        if view is None:
            await self._request("GET", f"{self._root}/health", expect_json=False)
        return view

    async def _router_view(self) -> str | None:
        """`N/M replicas healthy` from vLLM's router's `/workers`; None from a server
        without that endpoint (a plain `vllm serve` answers 404)."""
        try:
            response = await self._client.get(f"{self._root}/workers")
            workers = response.json()["workers"] if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(workers, list):
            return None
        workers = [w for w in workers if isinstance(w, dict)]
        healthy = [str(w.get("url")) for w in workers if w.get("is_healthy")]
        down = [str(w.get("url")) for w in workers if not w.get("is_healthy")]
        if not healthy:
            raise PolicyUnavailable(
                f"router at {self._root} has no healthy policy replica (of {len(workers)})"
            )
        note = f"router: {len(healthy)}/{len(workers)} policy replicas healthy"
        return note + (f"; down: {', '.join(down)}" if down else "")

    def running_requests(self) -> int:
        return 0  # not observable from here; the remote server owns its queue

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, url: str, expect_json: bool = True, **kwargs: Any) -> Any:
        search_id = current_search_id()
        if self._session_header and search_id:
            kwargs["headers"] = {self._session_header: search_id}
        response = await self._send_retrying_once(method, url, **kwargs)
        if response.status_code == 400:  # e.g. a prompt longer than the remote context
            raise PolicyRejected(
                f"remote policy at {self._base} refused the request: {_error_message(response)}"
            )
        if response.status_code != 200:
            raise PolicyUnavailable(
                f"remote policy at {self._base} answered {response.status_code} "
                f"for {url}: {response.text[:300]}"
            )
        return response.json() if expect_json else None

    async def _send_retrying_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One call, sent again once if it failed before the remote answered it: a
        connection that broke (not a timeout: the remote was working, and a second
        wait would double it) or a gateway error from a router."""
        for attempt in (1, 2):
            try:
                response = await self._client.request(method, url, **kwargs)
            except httpx.TimeoutException as error:
                raise PolicyUnavailable(
                    f"remote policy at {self._base} timed out: {type(error).__name__}: {error}"
                ) from error
            except httpx.HTTPError as error:
                if attempt == 1:
                    self.retries += 1
                    continue
                raise PolicyUnavailable(
                    f"remote policy at {self._base} unreachable (tried twice): "
                    f"{type(error).__name__}: {error}"
                ) from error
            if response.status_code in _GATEWAY_ERRORS and attempt == 1:
                self.retries += 1
                continue
            return response
        raise AssertionError("unreachable: the second attempt returns or raises")


def _error_message(response: httpx.Response) -> str:
    """The message of an OpenAI-style error body (vLLM's), else the body's start."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else body.get("message")
        if message:
            return str(message)
    return response.text[:300]


def _completion(choice: dict[str, Any], with_top_logprobs: bool) -> Completion:
    token_ids = choice.get("token_ids")
    if token_ids is None:
        raise PolicyUnavailable(
            "remote policy returned no token_ids; it must support return_token_ids (vLLM)"
        )
    logprobs = choice.get("logprobs") or {}
    return Completion(
        token_ids=tuple(token_ids),
        text=choice["text"],
        logprobs=tuple(float(x) for x in logprobs.get("token_logprobs") or []),
        finish_reason=choice.get("finish_reason") or "abort",
        top_logprobs=tuple(dict(top or {}) for top in logprobs.get("top_logprobs") or [])
        if with_top_logprobs
        else (),
    )
