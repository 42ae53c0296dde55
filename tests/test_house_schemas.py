"""Response schemas follow the core's dataclasses (issue 14, item 10).

`UsageOut` and `TraceNodeOut` used to copy `Usage` and `TraceNode` field by field,
so a field added to the core (a usage counter, particle filtering's node `weight`)
was silently dropped from every response. They are derived now; these tests fail
if anyone mirrors them by hand again and the copies drift.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import get_args

from fastapi.testclient import TestClient

from search_strategies.budget import StopReason, Usage
from search_strategies.results import TraceNode
from server.app import create_app
from server.schemas import SolveResponse, TraceNodeOut, UsageOut, response_model_of
from server.settings import Settings
from tests.inprocess import StandInBackend


def field_names(source: type) -> set[str]:
    return {spec.name for spec in fields(source)}


def test_usage_schema_has_exactly_the_ledgers_fields() -> None:
    assert set(UsageOut.model_fields) == field_names(Usage)


def test_trace_schema_has_exactly_the_trace_nodes_fields() -> None:
    assert set(TraceNodeOut.model_fields) == field_names(TraceNode)


def test_stopped_reason_lists_exactly_the_stop_reasons() -> None:
    annotation = SolveResponse.model_fields["stopped_reason"].annotation
    assert set(get_args(annotation)) == {reason.value for reason in StopReason}


def test_a_field_added_to_a_core_dataclass_reaches_the_response() -> None:
    """What happens when the core grows a field: the derived schema carries it."""

    @dataclass
    class GrownNode(TraceNode):
        resampled_from: int | None = None

    schema = response_model_of(GrownNode)
    node = GrownNode(id=1, parent=0, text="step", num_tokens=4, resampled_from=3)
    assert schema.model_validate(node, from_attributes=True).model_dump()["resampled_from"] == 3
    assert set(schema.model_json_schema()["properties"]) == field_names(GrownNode)


def test_a_solve_response_carries_every_usage_and_trace_field() -> None:
    async def factory(_: Settings) -> StandInBackend:
        return StandInBackend()

    with TestClient(create_app(Settings(), factory)) as client:
        body = client.post(
            "/v1/solve", json={"question": "3 bags of 4?", "n": 2, "return_trace": True}
        ).json()
    assert set(body["usage"]) == field_names(Usage)
    assert body["trace"] and all(set(node) == field_names(TraceNode) for node in body["trace"])
