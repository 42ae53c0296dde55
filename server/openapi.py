"""The OpenAPI document (`/openapi.json`): exact request schemas, every error answered.

FastAPI derives the responses from the routes' models; the routes read their bodies
themselves (to cap their size and validate them against the server limits), so the
request bodies, the error answers and the auth scheme are written here, in one place:

- Every schema is a component (`#/components/schemas/...`), so every `$ref` resolves.
- `/v1/solve` takes one schema per registered strategy (`oneOf`, discriminated by
  `strategy`), built from the strategy's own parameter model: a new strategy in
  `search_strategies.registry` appears here by itself.
- The schemas state this server's limits (`maximum`s from `ServerLimits`, the
  configured rewards, the served model ids, the chat limits), so a request the
  document allows is one the server accepts and the other way round, as far as JSON
  Schema can say it. What it cannot say is written in the descriptions.
- Each route documents the errors it answers, all with the `ErrorResponse` body.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, fields as dataclass_fields
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from search_strategies.beam_search import BeamSearchParams
from search_strategies.params import ServerLimits, StrategyParams, capped_by
from search_strategies.registry import STRATEGIES
from server.openai_schemas import ChatCompletionRequest
from server.schemas import NOT_BLANK, BudgetRequest, ErrorResponse, SolveRequest

COMPONENTS = "#/components/schemas/"

#: What each status means, on whichever route answers it.
ERROR_DESCRIPTIONS = {
    400: "Invalid request: a field is wrong or over a server maximum, the body is not "
    "a JSON object or larger than max_body_bytes, or the policy rejected the prompt "
    "(code context_length_exceeded).",
    401: "Missing or invalid API key (`Authorization: Bearer KEY`).",
    404: "Unknown model id (code model_not_found); /v1/models lists the ids.",
    429: "Every search slot and queue place is taken (code server_busy); retry after "
    "Retry-After seconds.",
    500: "Unexpected server error (its type only; the details are in the server log).",
    503: "The policy or a reward backend cannot answer (code policy_unavailable or "
    "reward_unavailable).",
}

#: The errors each operation answers besides 401 (added where an API key is needed).
#: A route missing here fails `tests/test_openapi.py`.
OPERATION_ERRORS: dict[tuple[str, str], tuple[int, ...]] = {
    ("get", "/health"): (500,),
    ("get", "/v1/models"): (500,),
    ("post", "/v1/solve"): (400, 429, 500, 503),
    ("post", "/v1/chat/completions"): (400, 404, 429, 500, 503),
}

#: Fields a parameter model validates together (one's allowed values depend on the
#: other's), which separate property schemas cannot say. The allowed pairs are found
#: by asking the model itself under this server's limits, so they cannot drift.
JOINT_FIELDS: dict[type[StrategyParams], tuple[str, str]] = {
    BeamSearchParams: ("n", "beam_width"),  # beam_width divides n (DVTS too)
}
#: Joint domains larger than this are described, not enumerated.
MAX_JOINT_VALUES = 256
#: Chat conversations up to this length get the "last message is the user's" rule
#: spelled out per length (JSON Schema has no "last item"); longer ones in words.
MAX_SPELLED_MESSAGES = 32

#: One event of a chat stream (`stream: true`); Open API 3.1 documents an event stream
#: by the schema of one event (3.2 would call it `itemSchema`).
SSE_EVENT = {
    "type": "object",
    "description": "One server-sent event: `data` is an OpenAI chat.completion.chunk "
    "(JSON; `search_progress` chunks while the search runs, an `error` object if it "
    "fails after the stream began), and finally `[DONE]`. Comment lines (`: keepalive`) "
    "keep idle connections open.",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
    "required": ["data"],
}

#: One event of a `/v1/solve` stream (`stream: true`); the format is in
#: `server.solve_stream`.
SOLVE_EVENT = {
    "type": "object",
    "description": "One server-sent event. `event: wave` (one per search wave): `data` is "
    "JSON with `wave`, `final`, `nodes` (the tree nodes the wave created or changed, "
    "fields as in the response's `trace`; folding every event's nodes by id rebuilds "
    "the tree, the `final` wave carries what the search's end changed), `best_score`, "
    "`usage`, `remaining` (tokens, reward_calls, time_s left; null: unlimited) and "
    "`elapsed_s`. `event: result`: `data` is the SolveResponse a non-streamed request "
    "returns. `event: error`: `data` is an error object (the search failed after the "
    "stream began). Comment lines (`: keepalive`) keep idle connections open.",
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string", "enum": ["wave", "result", "error"]},
    },
    "required": ["data", "event"],
}

_CAP_CODE = capped_by("max_n", "n").wrapped.__code__
_ABSENT = object()


@dataclass(frozen=True)
class ServerFacts:
    """What the document depends on. None: not known yet (the lifespan has not run)."""

    limits: ServerLimits
    max_messages: int
    max_choices: int
    rewards: tuple[str, ...] | None = None
    model_ids: tuple[str, ...] | None = None
    strategies: tuple[str, ...] = tuple(STRATEGIES)
    api_key: bool = False
    open_paths: frozenset[str] = frozenset()

    @property
    def complete(self) -> bool:
        return self.rewards is not None and self.model_ids is not None


def install_openapi(app: FastAPI, facts: ServerFacts) -> None:
    """Serve `build_openapi`'s document; completed (and cached) once the server runs."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        service = getattr(app.state, "service", None)
        chat = getattr(app.state, "chat", None)
        current = facts
        if service is not None and chat is not None:
            current = ServerFacts(
                **{
                    **{f.name: getattr(facts, f.name) for f in dataclass_fields(facts)},
                    "limits": service.limits,
                    "rewards": tuple(service.rewards),
                    "model_ids": tuple(chat.model_ids()),
                    "strategies": tuple(service.runnable_strategies()),
                }
            )
        document = build_openapi(app, current)
        if current.complete:
            app.openapi_schema = document
        return document

    # FastAPI's documented way to customise the schema is to replace this method.
    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI, facts: ServerFacts) -> dict[str, Any]:
    document = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    _add_components(schemas, _request_components(facts))
    operations = dict(_operations(document))
    unknown = set(operations) - set(OPERATION_ERRORS)
    if unknown:
        raise RuntimeError(f"server.openapi.OPERATION_ERRORS lacks {sorted(unknown)}")
    for (method, path), operation in operations.items():
        secured = facts.api_key and path not in facts.open_paths
        _document_errors(operation, OPERATION_ERRORS[(method, path)] + ((401,) if secured else ()))
        if secured:
            operation["security"] = [{"bearerAuth": []}]
    solve = operations["post", "/v1/solve"]
    solve["requestBody"] = _json_body("SolveRequest")
    solve["responses"]["200"]["content"]["text/event-stream"] = {"schema": SOLVE_EVENT}
    chat = operations["post", "/v1/chat/completions"]
    chat["requestBody"] = _json_body("ChatCompletionRequest")
    chat["responses"]["200"]["content"]["text/event-stream"] = {"schema": SSE_EVENT}
    health = operations["get", "/health"]["responses"]
    health["503"] = {
        "description": "The policy cannot answer (status unavailable).",
        "content": {"application/json": {"schema": {"$ref": COMPONENTS + "HealthResponse"}}},
    }
    if facts.api_key:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"}
        }
    _prune(document)
    return document


def _operations(document: dict[str, Any]) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield (method, path), operation


def _json_body(component: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": COMPONENTS + component}}},
    }


def _document_errors(operation: dict[str, Any], codes: tuple[int, ...]) -> None:
    responses = operation.setdefault("responses", {})
    for code in sorted(codes):
        answer: dict[str, Any] = {
            "description": ERROR_DESCRIPTIONS[code],
            "content": {"application/json": {"schema": {"$ref": COMPONENTS + "ErrorResponse"}}},
        }
        if code == 429:
            answer["headers"] = {
                "Retry-After": {
                    "required": True,
                    "description": "Seconds until a slot is likely free.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        if code == 401:
            answer["headers"] = {
                "WWW-Authenticate": {
                    "required": True,
                    "schema": {"type": "string", "const": "Bearer"},
                }
            }
        responses[str(code)] = answer


def _add_components(schemas: dict[str, Any], new: dict[str, Any]) -> None:
    for name, schema in new.items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"two different OpenAPI schemas named {name!r}")
        schemas[name] = schema


# -- request bodies -----------------------------------------------------------------


def _request_components(facts: ServerFacts) -> dict[str, Any]:
    params_models = [spec.params_model for spec in STRATEGIES.values()]
    models: list[type[BaseModel]] = [SolveRequest, ChatCompletionRequest, ErrorResponse]
    models += params_models
    _, generated = models_json_schema(
        [(model, "validation") for model in models], ref_template=COMPONENTS + "{model}"
    )
    defs: dict[str, Any] = generated["$defs"]
    capped: list[type[BaseModel]] = [SolveRequest, *params_models]
    for model in capped:
        _apply_caps(model, defs[model.__name__], facts.limits)
    _apply_caps(BudgetRequest, defs["BudgetRequest"], facts.limits)
    solve = defs["SolveRequest"]
    if facts.rewards is not None:
        solve["properties"]["reward"] = _reward_enum(solve["properties"]["reward"], facts.rewards)
    variants = {}
    for name in facts.strategies:
        params_model = STRATEGIES[name].params_model
        params = _params_schema(params_model, defs[params_model.__name__], facts)
        variants[name] = _solve_variant(name, solve, params)
    defs.update({_variant_name("SolveRequest", n): v for n, v in variants.items()})
    default = SolveRequest.model_fields["strategy"].default
    defs["SolveRequest"] = {
        "title": "SolveRequest",
        "description": "A question to answer by search, with the strategy's own "
        f"parameters at the top level; one schema per strategy (`strategy`, default "
        f"{default!r}).",
        "oneOf": [{"$ref": COMPONENTS + _variant_name("SolveRequest", n)} for n in variants],
        "discriminator": {
            "propertyName": "strategy",
            "mapping": {n: COMPONENTS + _variant_name("SolveRequest", n) for n in variants},
        },
    }
    _chat_request(defs, facts)
    return defs


def _variant_name(prefix: str, strategy: str) -> str:
    return f"{prefix}_{strategy}"


def _reward_enum(schema: dict[str, Any], rewards: tuple[str, ...]) -> dict[str, Any]:
    schema = {k: v for k, v in schema.items() if k != "anyOf"}
    options: list[dict[str, Any]] = [{"type": "null"}]
    if rewards:
        options.insert(0, {"type": "string", "enum": list(rewards)})
    schema["anyOf"] = options
    schema["description"] += f" Configured: {', '.join(rewards) or 'none'}."
    return schema


def _numeric_branches(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if schema.get("type") in ("integer", "number"):
        yield schema
    for branch in schema.get("anyOf", []):
        yield from _numeric_branches(branch)


def _caps(model: type[BaseModel]) -> Iterator[tuple[str, str]]:
    """(field, limit name) of every `capped_by` validator of `model`."""
    for decorator in model.__pydantic_decorators__.field_validators.values():
        if getattr(decorator.func, "__code__", None) is _CAP_CODE:
            limit = inspect.getclosurevars(decorator.func).nonlocals["limit_name"]
            for field in decorator.info.fields:
                yield field, limit


def _apply_caps(model: type[BaseModel], schema: dict[str, Any], limits: ServerLimits) -> None:
    for field, limit in _caps(model):
        value = getattr(limits, limit)
        prop = schema["properties"][field]
        for branch in _numeric_branches(prop):
            branch["maximum"] = min(branch.get("maximum", value), value)
        prop["description"] = (
            prop.get("description", "") + f" At most the server maximum {limit}={value}."
        ).strip()


def _params_schema(
    model: type[StrategyParams], schema: dict[str, Any], facts: ServerFacts
) -> dict[str, Any]:
    """The model's schema, narrowed to what this server accepts."""
    schema = copy.deepcopy(schema)
    if facts.rewards == ():
        _drop_reward_values(model, schema)
    for base, pair in JOINT_FIELDS.items():
        if issubclass(model, base):
            joint = _joint_rule(model, schema, pair, facts.limits)
            if joint is not None:
                schema.setdefault("allOf", []).append(joint)
    return schema


def _drop_reward_values(model: type[StrategyParams], schema: dict[str, Any]) -> None:
    """Without a reward, enum values that make the strategy need one are refused."""
    for field, prop in schema["properties"].items():
        if "enum" not in prop:
            continue
        prop["enum"] = [v for v in prop["enum"] if not _needs_reward(model, {field: v})]


def _needs_reward(model: type[StrategyParams], data: dict[str, Any]) -> bool:
    try:
        return model.model_validate(data).needs_reward
    except ValidationError:
        return False


def _int_domain(prop: dict[str, Any]) -> range | None:
    if prop.get("type") != "integer" or "maximum" not in prop:
        return None
    low = prop.get("minimum", 0)
    high = prop["maximum"]
    return range(low, high + 1) if high - low < MAX_JOINT_VALUES else None


def _joint_rule(
    model: type[StrategyParams],
    schema: dict[str, Any],
    pair: tuple[str, str],
    limits: ServerLimits,
) -> dict[str, Any] | None:
    """`anyOf` the combinations of two bounded integer fields the model accepts.

    Each branch fixes a set of values of the first field (or its absence) and lists
    the second's allowed values (and whether it may be left out).
    """
    first, second = pair
    first_domain, second_domain = (_int_domain(schema["properties"][name]) for name in pair)
    if first_domain is None or second_domain is None:
        return None
    branches: dict[tuple[tuple[int, ...], bool], list[Any]] = {}
    for a in [_ABSENT, *first_domain]:
        allowed = []
        absent_ok = False
        for b in [_ABSENT, *second_domain]:
            data = {k: v for k, v in ((first, a), (second, b)) if v is not _ABSENT}
            try:
                model.model_validate(data, context={"limits": limits})
            except ValidationError:
                continue
            if b is _ABSENT:
                absent_ok = True
            else:
                allowed.append(b)
        if allowed or absent_ok:
            branches.setdefault((tuple(allowed), absent_ok), []).append(a)
    rules = []
    for (seconds, absent_ok), firsts in branches.items():
        present = [a for a in firsts if a is not _ABSENT]
        selectors: list[dict[str, Any]] = []
        if present:
            selectors.append({"properties": {first: {"enum": present}}, "required": [first]})
        if _ABSENT in firsts:
            selectors.append({"not": {"required": [first]}})
        for selector in selectors:
            rule = copy.deepcopy(selector)
            rule.setdefault("properties", {})[second] = (
                {"enum": list(seconds)} if seconds else False
            )
            if not absent_ok:
                rule["required"] = rule.get("required", []) + [second]
            rules.append(rule)
    return {
        "description": f"{first} and {second} are checked together "
        f"(see {second}'s description); these are the combinations the server accepts.",
        "anyOf": rules,
    }


def _solve_variant(name: str, solve: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    common = {k: v for k, v in solve["properties"].items() if k != "strategy"}
    clash = set(common) & set(params["properties"])
    if clash:
        raise RuntimeError(f"strategy {name!r} parameters clash with solve fields: {clash}")
    default = SolveRequest.model_fields["strategy"].default
    strategy = {"const": name, "type": "string", "description": "Search strategy name."}
    required = ["question"] + params.get("required", [])
    if name == default:
        strategy["default"] = name
    else:
        required.insert(0, "strategy")
    variant = {
        "title": _variant_name("SolveRequest", name),
        "description": f"/v1/solve with strategy {name!r}."
        + (f" {params['description']}" if params.get("description") else ""),
        "type": "object",
        "properties": {"strategy": strategy, **common, **params["properties"]},
        "required": required,
        "additionalProperties": False,
    }
    if params.get("allOf"):
        variant["allOf"] = params["allOf"]
    return variant


# -- the chat request ----------------------------------------------------------------


def _chat_request(defs: dict[str, Any], facts: ServerFacts) -> None:
    """`ChatCompletionRequest` with this server's limits and the rules the route adds."""
    chat = defs["ChatCompletionRequest"]
    props = chat["properties"]
    limits = facts.limits
    props["n"]["maximum"] = facts.max_choices
    props["n"]["description"] = (
        f"Choices: independent searches (at most the server maximum "
        f"max_choices={facts.max_choices})."
    )
    if facts.model_ids is not None:
        props["model"] = {
            "type": "string",
            "enum": list(facts.model_ids),
            "description": "`<model>` samples plainly; `<model>@<strategy>` runs that "
            "strategy (see /v1/models).",
        }
    for name in ("max_tokens", "max_completion_tokens"):
        props[name]["description"] = (
            "The strategy's max_new_tokens (max_completion_tokens wins), at most the "
            f"server maximum max_new_tokens={limits.max_new_tokens} unless "
            "search.max_new_tokens is given."
        )
    props["max_completion_tokens"]["anyOf"][0]["maximum"] = limits.max_new_tokens
    chat["allOf"] = [
        {
            "description": "max_tokens counts only when neither max_completion_tokens nor "
            "search.max_new_tokens is given.",
            "anyOf": [
                {
                    "required": ["max_completion_tokens"],
                    "properties": {"max_completion_tokens": {"type": "integer"}},
                },
                {
                    "required": ["search"],
                    "properties": {"search": {"type": "object", "required": ["max_new_tokens"]}},
                },
                {"properties": {"max_tokens": {"maximum": limits.max_new_tokens}}},
            ],
        }
    ]
    props["messages"] = _messages_schema(props["messages"], facts.max_messages)
    props["search"] = {
        "description": "Ponder extension: the /v1/solve search options (strategy, "
        "reward, budget, the strategy's parameters). Without `strategy`, the model id's "
        "strategy and the fields every strategy takes.",
        "anyOf": [{"$ref": COMPONENTS + "SearchOptions"}, {"type": "null"}],
    }
    defs["SearchOptions"] = _search_options(defs, facts)


def _messages_schema(schema: dict[str, Any], max_messages: int) -> dict[str, Any]:
    """At most max_messages turns, the last one the user's and not blank."""
    item = {"$ref": COMPONENTS + "ChatMessageIn"}
    last = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "user"},
            "content": {
                "anyOf": [
                    {"type": "string", "pattern": NOT_BLANK},
                    {
                        "type": "array",
                        "contains": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {"text": {"type": "string", "pattern": NOT_BLANK}},
                        },
                    },
                ]
            },
        },
    }
    spelled = min(max_messages, MAX_SPELLED_MESSAGES)
    by_length: list[dict[str, Any]] = [
        {"minItems": length, "maxItems": length, "prefixItems": [True] * (length - 1) + [last]}
        for length in range(1, spelled + 1)
    ]
    if max_messages > spelled:
        by_length.append({"minItems": spelled + 1})
    return {
        "type": "array",
        "items": item,
        "minItems": 1,
        "maxItems": max_messages,
        "description": "The conversation: leading system/developer turns are the system "
        "prompt, the last turn (the user's, not blank) the question, the rest history. "
        f"At most the server maximum max_messages={max_messages}.",
        "anyOf": by_length,
    }


def _search_options(defs: dict[str, Any], facts: ServerFacts) -> dict[str, Any]:
    """Chat's `search`: one schema per strategy, plus one naming no strategy."""
    base = defs["SearchOptions"]
    common = {k: v for k, v in base["properties"].items() if k != "strategy"}
    if facts.rewards is not None:
        common["reward"] = _reward_enum(common["reward"], facts.rewards)
    branches = []
    for name in facts.strategies:
        params_model = STRATEGIES[name].params_model
        params = _params_schema(params_model, defs[params_model.__name__], facts)
        variant_name = _variant_name("SearchOptions", name)
        variant = {
            "title": variant_name,
            "type": "object",
            "properties": {
                "strategy": {"const": name, "type": "string"},
                **common,
                **params["properties"],
            },
            "required": ["strategy"],
            "additionalProperties": False,
        }
        if params.get("allOf"):
            variant["allOf"] = params["allOf"]
        defs[variant_name] = variant
        branches.append({"$ref": COMPONENTS + variant_name})
    shared = _params_schema(StrategyParams, _shared_params_schema(facts.limits), facts)
    defs["SearchOptions_model_strategy"] = {
        "title": "SearchOptions_model_strategy",
        "description": "No `strategy`: the model id's (plain sampling for the bare id).",
        "type": "object",
        "properties": {"strategy": {"type": "null"}, **common, **shared["properties"]},
        "additionalProperties": False,
    }
    branches.append({"$ref": COMPONENTS + "SearchOptions_model_strategy"})
    return {
        "title": "SearchOptions",
        "description": base.get("description", ""),
        "oneOf": branches,
    }


def _shared_params_schema(limits: ServerLimits) -> dict[str, Any]:
    schema = StrategyParams.model_json_schema(ref_template=COMPONENTS + "{model}")
    _apply_caps(StrategyParams, schema, limits)
    return schema


# -- references ----------------------------------------------------------------------


def references(node: Any) -> Iterator[str]:
    """Every `$ref` value under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def _prune(document: dict[str, Any]) -> None:
    """Drop components no operation reaches (the bases the variants were built from)."""
    schemas = document["components"]["schemas"]
    reached: set[str] = set()
    pending = [ref for ref in references(document["paths"])]
    while pending:
        ref = pending.pop()
        name = ref.removeprefix(COMPONENTS)
        if name in reached or name not in schemas:
            continue
        reached.add(name)
        pending.extend(references(schemas[name]))
    document["components"]["schemas"] = {k: v for k, v in schemas.items() if k in reached}
