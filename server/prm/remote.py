"""A PRM served by a remote `vllm serve`, over httpx.

- Qwen2.5-Math-PRM: `POST /pooling` with token-id inputs and `task: token_classify`;
  the server filters rows by its pooler's `step_tag_id` (151651 by default for that
  architecture; other tokenizers need `--pooler-config '{"step_tag_id": N}'`).
- Token-logit PRMs: `POST /v1/completions` with all step prompts as token-id lists,
  `max_tokens: 1` and `logprob_token_ids` (the two labels), keys as token ids.
- Chat rendering and encoding use the server's `/tokenize`, so Ponder needs no
  local copy of the PRM's tokenizer.

Every call has a timeout. Unreachable, timed out or 5xx: `RewardUnavailable` (a 503
that names this backend, or the request's `reward_fallback`); a 4xx or a malformed
answer: `RewardError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from search_strategies.protocols import ChatMessage
from search_strategies.reward import RewardError, RewardUnavailable


class RemotePRMBackend:
    """A `PRMBackend` over HTTP. The model name is learned lazily from `/v1/models`,
    so a server that starts after Ponder (or is down) does not stop Ponder starting."""

    def __init__(
        self, url: str, model: str | None = None, timeout_s: float = 60.0, name: str = "prm"
    ) -> None:
        self._name = name
        self._root = url.rstrip("/").removesuffix("/v1")
        self._model = model
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._timeout_s = timeout_s
        self._model_lock = asyncio.Lock()

    @property
    def description(self) -> str:
        return f"reward backend {self._name!r} (remote PRM at {self._root})"

    async def _model_name(self) -> str:
        async with self._model_lock:
            if self._model is None:
                body = await self._post_or_get("GET", "/v1/models")
                try:
                    self._model = str(body["data"][0]["id"])
                except (KeyError, IndexError, TypeError):
                    raise RewardError(f"{self.description}: /v1/models lists no model") from None
            return self._model

    async def render_chat(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool
    ) -> list[int]:
        body = await self._post(
            "/tokenize",
            {
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "add_generation_prompt": add_generation_prompt,
                "add_special_tokens": False,
            },
        )
        return _ints(body.get("tokens"), self.description, "/tokenize tokens")

    async def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        body = await self._post(
            "/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens}
        )
        return _ints(body.get("tokens"), self.description, "/tokenize tokens")

    async def classify_steps(
        self, prompts: Sequence[Sequence[int]], step_tag_id: int
    ) -> list[list[list[float]]]:
        body = await self._post(
            "/pooling", {"input": [list(p) for p in prompts], "task": "token_classify"}
        )
        try:
            items = sorted(body["data"], key=lambda item: item["index"])
            rows = [item["data"] for item in items]
        except (KeyError, TypeError):
            raise RewardError(f"{self.description}: malformed /pooling answer") from None
        if len(rows) != len(prompts):
            raise RewardError(
                f"{self.description}: /pooling returned {len(rows)} results for "
                f"{len(prompts)} inputs"
            )
        return [[list(map(float, row)) for row in tag_rows] for tag_rows in rows]

    async def label_logprobs(
        self, prompts: Sequence[Sequence[int]], label_ids: Sequence[int]
    ) -> list[list[float]]:
        body = await self._post(
            "/v1/completions",
            {
                "prompt": [list(p) for p in prompts],
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 1,
                "logprob_token_ids": list(label_ids),
                "return_tokens_as_token_ids": True,
            },
        )
        try:
            choices = sorted(body["choices"], key=lambda c: c["index"])
            tops = [choice["logprobs"]["top_logprobs"][0] for choice in choices]
            return [[float(top[f"token_id:{t}"]) for t in label_ids] for top in tops]
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise RewardError(
                f"{self.description}: completions answer lacks the label logprobs "
                f"({type(error).__name__}: {error}); is it a vLLM with logprob_token_ids?"
            ) from None

    async def check_health(self) -> None:
        await self._post_or_get("GET", "/health", expect_json=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        payload = {"model": await self._model_name(), **payload}
        return await self._post_or_get("POST", path, payload)

    async def _post_or_get(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        expect_json: bool = True,
    ) -> Any:
        url = self._root + path
        try:
            response = await self._client.request(method, url, json=payload)
        except httpx.TimeoutException:
            raise RewardUnavailable(
                f"{self.description}: no answer from {path} within {self._timeout_s:g} s"
            ) from None
        except httpx.HTTPError as error:
            raise RewardUnavailable(
                f"{self.description} unreachable: {type(error).__name__}: {error}"
            ) from None
        if response.status_code >= 500:
            raise RewardUnavailable(
                f"{self.description} answered {response.status_code} for {path}: "
                f"{response.text[:300]}"
            )
        if response.status_code != 200:
            raise RewardError(
                f"{self.description} refused {path} ({response.status_code}): {response.text[:300]}"
            )
        if not expect_json:
            return None
        try:
            return response.json()
        except ValueError:
            raise RewardError(f"{self.description}: {path} did not answer JSON") from None


def _ints(value: object, where: str, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise RewardError(f"{where}: {what} is not a list of token ids")
    return list(value)
