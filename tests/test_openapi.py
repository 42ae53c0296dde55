"""The OpenAPI document: every reference resolves, every route's errors are documented,
and the server answers as the document says (schemathesis, all checks).

In-process app with a scripted policy (`tests.inprocess`): no engine, seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from search_strategies.beam_search import BeamSearchParams
from search_strategies.registry import STRATEGIES
from server.errors import InvalidRequest, openai_error
from server.openapi import OPERATION_ERRORS, references
from server.settings import Settings
from tests.inprocess import StandInBackend, serve_in_thread

API_KEY = "openapi-test-key"
#: Small limits, so that schemathesis explores the edges in few examples.
SETTINGS = Settings(
    served_model_name="scripted",
    max_n=8,
    max_new_tokens=64,
    max_tokens=512,
    max_reward_calls=16,
    max_time_limit_s=5.0,
    max_steps=4,
    max_simulations=8,
    max_messages=4,
    max_choices=2,
    api_key=(API_KEY,),
)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_in_thread(SETTINGS, StandInBackend()) as url:
        yield url


@pytest.fixture(scope="module")
def document(server_url: str) -> dict[str, Any]:
    response = httpx.get(f"{server_url}/openapi.json", headers=_auth())
    response.raise_for_status()
    return response.json()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def resolve(document: dict[str, Any], ref: str) -> Any:
    """A local JSON pointer (`#/a/b`), resolved in `document`; KeyError if it is not there."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = set(references(document))
    assert refs, "the document has no references at all"
    broken = []
    for ref in sorted(refs):
        try:
            resolve(document, ref)
        except (KeyError, IndexError, ValueError):
            broken.append(ref)
    assert not broken, f"unresolvable references: {broken}"
    assert not any("$defs" in ref for ref in refs)


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    """Every schema in it is a valid JSON Schema (2020-12, as OpenAPI 3.1 uses)."""
    assert document["openapi"].startswith("3.1")
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_each_route_documents_its_errors(document: dict[str, Any]) -> None:
    error_ref = "#/components/schemas/ErrorResponse"
    documented = {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert set(documented) == set(OPERATION_ERRORS)
    for (method, path), operation in documented.items():
        codes = set(OPERATION_ERRORS[method, path]) | ({401} if path != "/health" else set())
        for code in codes:
            answer = operation["responses"][str(code)]
            schema = answer["content"]["application/json"]["schema"]
            if (path, code) != ("/health", 503):
                assert schema == {"$ref": error_ref}, (method, path, code)
        if path != "/health":
            assert operation["security"] == [{"bearerAuth": []}]
    assert documented["get", "/health"]["responses"]["503"]["content"]["application/json"][
        "schema"
    ] == {"$ref": "#/components/schemas/HealthResponse"}
    assert "Retry-After" in documented["post", "/v1/solve"]["responses"]["429"]["headers"]


def test_error_schema_matches_the_error_mapping(document: dict[str, Any]) -> None:
    """The documented error body is what `server.errors.openai_error` sends."""
    validator = _validator(document, "ErrorResponse")
    for error in (ValueError("unforeseen"), InvalidRequest("n: must be at most 8", "n")):
        validator.validate(openai_error(error).body)


def _validator(document: dict[str, Any], component: str) -> jsonschema.Validator:
    """A validator of one component that resolves `#/components/...` in `document`."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:openapi", resource)
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:openapi#/components/schemas/{component}"}, registry=registry
    )


def test_solve_has_one_schema_per_strategy(document: dict[str, Any]) -> None:
    solve = resolve(document, "#/components/schemas/SolveRequest")
    mapping = solve["discriminator"]["mapping"]
    assert solve["discriminator"]["propertyName"] == "strategy"
    # Every strategy this server runs: all but `auto`, which needs a policy table fitted
    # for the served model, and "scripted" has none (server.auto_policy).
    assert set(mapping) == set(STRATEGIES) - {"auto"}
    assert [v["$ref"] for v in solve["oneOf"]] == list(mapping.values())
    for name, ref in mapping.items():
        variant = resolve(document, ref)
        assert variant["properties"]["strategy"]["const"] == name
        params = STRATEGIES[name].params_model.model_fields
        assert set(params) <= set(variant["properties"])
        assert variant["additionalProperties"] is False
    # The server limits are in the schema.
    beam = resolve(document, mapping["beam_search"])
    assert beam["properties"]["n"]["maximum"] == SETTINGS.max_n
    assert beam["properties"]["max_steps"]["maximum"] == SETTINGS.max_steps


def test_documented_solve_bodies_are_the_accepted_ones(document: dict[str, Any]) -> None:
    """The schema says what the server's validation says, joint rules included."""
    validator = _validator(document, "SolveRequest")
    for n in range(1, SETTINGS.max_n + 2):
        for width in range(1, SETTINGS.max_n + 2):
            body = {"question": "q?", "strategy": "beam_search", "n": n, "beam_width": width}
            try:
                BeamSearchParams.model_validate(
                    {"n": n, "beam_width": width}, context={"limits": SETTINGS.limits}
                )
                accepted = True
            except ValueError:
                accepted = False
            assert validator.is_valid(body) == accepted, (n, width)
    assert validator.is_valid({"question": "q?"})
    assert not validator.is_valid({"question": "  \n"})
    assert not validator.is_valid({"question": "q?", "strategy": "nope"})
    assert not validator.is_valid({"question": "q?", "reward": "prm"})
    assert not validator.is_valid({"question": "q?", "strategy": "mcts", "rollout": 0})


def test_chat_schema_states_the_route_rules(document: dict[str, Any]) -> None:
    validator = _validator(document, "ChatCompletionRequest")
    user = {"role": "user", "content": "q?"}
    ok = {"model": "scripted", "messages": [user]}
    assert validator.is_valid(ok)
    assert validator.is_valid(
        {**ok, "model": "scripted@mcts", "search": {"strategy": "dvts", "n": 4, "beam_width": 2}}
    )
    assert not validator.is_valid({**ok, "messages": [user, {"role": "assistant", "content": "a"}]})
    assert not validator.is_valid({**ok, "messages": [{"role": "user", "content": " "}]})
    assert not validator.is_valid({**ok, "messages": [user] * (SETTINGS.max_messages + 1)})
    assert not validator.is_valid({**ok, "n": SETTINGS.max_choices + 1})
    assert not validator.is_valid({**ok, "model": "other"})
    assert not validator.is_valid({**ok, "max_tokens": SETTINGS.max_new_tokens + 1})
    assert validator.is_valid(
        {**ok, "max_tokens": SETTINGS.max_new_tokens + 1, "max_completion_tokens": 8}
    )
    assert not validator.is_valid({**ok, "search": {"n": 4}})  # n: the strategy's field
    assert validator.is_valid({**ok, "search": {"temperature": 0.2}})


def test_request_bodies_are_strict_json(server_url: str) -> None:
    """A string or bool is not a number (400); 2.0 is the integer 2 (JSON says so)."""
    with httpx.Client(base_url=server_url, headers=_auth()) as http:
        for body in (
            {"question": "q?", "n": "2"},
            {"question": "q?", "return_trace": 1},
            {"question": "q?", "strategy": "mcts", "rollout": 0},
            {"question": "q?", "budget": {"max_tokens": "9"}},
        ):
            assert http.post("/v1/solve", json=body).status_code == 400, body
        assert http.post("/v1/solve", json={"question": "q?", "n": 2.0}).status_code == 200
        chat = {"model": "scripted", "messages": [{"role": "user", "content": "q?"}]}
        assert http.post("/v1/chat/completions", json={**chat, "n": 2.0}).status_code == 200
        assert http.post("/v1/chat/completions", json={**chat, "n": "2"}).status_code == 400
        # Found by schemathesis: a seed that is not an int was a 500 (TypeError).
        for seed in ({}, True, "1"):
            answer = http.post("/v1/chat/completions", json={**chat, "search": {"seed": seed}})
            assert answer.status_code == 400, (seed, answer.text)


def _schemathesis() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    return [found]


@pytest.mark.slow  # about 30 s: make test runs it, make test-fast leaves it out
def test_schemathesis_finds_nothing(server_url: str, tmp_path: Path) -> None:
    """`schemathesis run --checks all` against a server with small limits: no failures.

    Bounded: 10 examples per operation, a fixed seed, 30 s (the coverage phase's
    boundary cases take most of it).
    """
    command = _schemathesis() + [
        "run",
        f"{server_url}/openapi.json",
        "--checks",
        "all",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--max-time",
        "30",
        "--output-sanitize",
        "false",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "too_slow,filter_too_much",
        "--warnings",
        "off",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12000:]
    assert "unresolvable" not in output.lower(), output[-6000:]
