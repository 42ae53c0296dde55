"""HTTP request and response bodies of the plain API (`/v1/solve`, `/health`, ...).

Strategy parameters (n, temperature, seed, ...) sit at the top level of a solve
request next to `strategy`; they are validated by that strategy's own parameter
model, so each strategy owns its fields and their limits. The usage ledger and the
trace are derived from the core's dataclasses, so they cannot drift from them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from search_strategies.budget import StopReason, Usage
from search_strategies.params import capped_by
from search_strategies.results import TraceNode

#: JSON Schema pattern of a string `str.strip()` leaves non-empty: one character that
#: is not whitespace to Python (`\s`, plus the separators U+001C..U+001F it strips).
NOT_BLANK = r"[^\s\u001c-\u001f]"


def whole_number(value: Any) -> Any:
    """2.0 is the integer 2 in JSON (and JSON Schema): accept it where an int is due."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class StrictJSONBody(BaseModel):
    """A request body validated strictly (a string or a bool is not a number, 0 is not
    false: a 400, as the OpenAPI document says), whole floats (2.0) read as ints.

    The normalization covers the extra fields too, which a strategy's parameter
    model validates later (strictly as well, in `SolveService.plan`).
    """

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: whole_number(value) for key, value in data.items()}
        return data


class BudgetRequest(StrictJSONBody):
    """What one request may spend; each field is capped by a server maximum."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(
        None, ge=1, description="Generated tokens, all samples together."
    )
    max_reward_calls: int | None = Field(
        None, ge=1, description="Calls to the reward backend (each scores one wave)."
    )
    time_limit_s: float | None = Field(
        None, gt=0, description="Wall time; the search stops and returns at the deadline."
    )

    _max_tokens_cap = capped_by("max_tokens", "max_tokens")
    _reward_calls_cap = capped_by("max_reward_calls", "max_reward_calls")
    _time_cap = capped_by("max_time_limit_s", "time_limit_s")


class SearchOptions(StrictJSONBody):
    """How to search: strategy, reward, budget, and the strategy's own fields (extra).

    `/v1/solve` takes these at the top level; `/v1/chat/completions` takes them in its
    `search` extension object. One schema, validated the same way in both.
    """

    model_config = ConfigDict(extra="allow")

    strategy: str | None = Field(None, description="Search strategy name.")
    reward: str | None = Field(
        None, description="Reward client for reward-guided selection (server default if unset)."
    )
    reward_fallback: Literal["error", "none"] = Field(
        "error",
        description="When the reward backend is unreachable: 'error' answers 503; 'none' "
        "continues the search without reward (every step scored 0.5) and says so in "
        "`reward_error`.",
    )
    budget: BudgetRequest = Field(default_factory=BudgetRequest)

    def strategy_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SolveRequest(SearchOptions):
    """A question to answer by search; extra fields are the strategy's parameters."""

    question: str = Field(
        min_length=1,
        description="The problem to solve (not blank).",
        json_schema_extra={"pattern": NOT_BLANK},
    )
    system_prompt: str | None = Field(
        None, description="Overrides the server's default system prompt."
    )
    strategy: str = Field("best_of_n", description="Search strategy name.")
    return_trace: bool = Field(False, description="Include the search tree.")
    stream: bool = Field(
        False,
        description="Answer with server-sent events: a `wave` event per search wave (the "
        "tree nodes it created or changed, usage so far, budget left), then a `result` "
        "event with the body a non-streamed request returns.",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class CandidateOut(BaseModel):
    text: str
    answer: str | None
    mean_logprob: float | None
    finish_reason: str
    num_tokens: int
    score: float


def response_model_of(source: type, name: str | None = None) -> type[BaseModel]:
    """A response model with exactly the fields and types of a core dataclass.

    Derived, not copied: a field added to the core (a usage counter, a trace node's
    particle weight) reaches every response and the OpenAPI page by itself, where a
    hand-kept copy dropped it silently (pydantic ignores keys it does not know).
    Every field is required, since the server always fills them all from the core.
    """
    hints = get_type_hints(source)
    definitions: dict[str, Any] = {spec.name: (hints[spec.name], ...) for spec in fields(source)}
    return create_model(name or f"{source.__name__}Out", __doc__=source.__doc__, **definitions)


if TYPE_CHECKING:
    # Built at import from the core's dataclasses and enum, which a static checker
    # cannot evaluate; to it they are a plain model and the enum's value type.
    UsageOut = BaseModel
    TraceNodeOut = BaseModel
    StoppedReason = str
else:
    UsageOut = response_model_of(Usage, "UsageOut")
    TraceNodeOut = response_model_of(TraceNode, "TraceNodeOut")
    #: `StopReason`'s values as a Literal built at import, so they are spelled once (in
    #: the core).
    StoppedReason = Literal[tuple(reason.value for reason in StopReason)]


class TimingOut(BaseModel):
    total_s: float
    search_s: float


class SolveResponse(BaseModel):
    id: str
    model: str
    strategy: str
    reward: str | None = Field(description="Reward client the search used, if any.")
    reward_error: str | None = Field(
        None,
        description="Set when the reward backend failed and the request asked for "
        "reward_fallback='none': why, and that the search went on without reward.",
    )
    answer: str | None = Field(description="Extracted final answer of the chosen solution.")
    answer_text: str | None = Field(description="Full text of the chosen solution.")
    candidates: list[CandidateOut]
    usage: UsageOut
    timing: TimingOut
    stopped_reason: StoppedReason
    trace: list[TraceNodeOut] | None = None
    search: dict[str, Any] | None = Field(
        None,
        description="What the strategy decided, when it decides something: for `auto`, "
        '`{"auto": {difficulty, feature, features, chosen_strategy, params, evidence}}`.',
    )


class HealthResponse(BaseModel):
    """503 "unavailable" when the policy cannot answer; 200 "degraded" when only a
    reward backend of its own (a learned PRM or judge, by name) is down: requests that
    do not use it still work, so an orchestrator should not restart the server for it."""

    status: Literal["ok", "degraded", "unavailable"]
    model: str
    detail: str | None = None
    running_requests: int = 0
    rewards: dict[str, str] = Field(
        default_factory=dict,
        description="Reward backends of their own: 'ok' or 'unavailable: why'.",
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "ponder"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, for a person to read.")
    type: str = Field(
        description="invalid_request_error, rate_limit_error, not_found_error, "
        "service_unavailable or server_error."
    )
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None = Field(
        description="Machine-readable reason: invalid_value, invalid_api_key, "
        "model_not_found, context_length_exceeded, invalid_prompt, server_busy, "
        "policy_unavailable, reward_unavailable."
    )


class ErrorResponse(BaseModel):
    """Every error, on every route, in OpenAI's format (`server.errors`)."""

    error: ErrorDetail
