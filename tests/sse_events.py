"""Reading a server-sent event stream in tests: `(event, data)` pairs, comments apart."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    name: str
    data: Any


@dataclass
class Stream:
    events: list[Event] = field(default_factory=list)
    comments: int = 0

    def named(self, name: str) -> list[Any]:
        return [event.data for event in self.events if event.name == name]


def parse_events(lines: Iterable[str]) -> Iterator[Event | None]:
    """Events as they complete (None for each comment line), per the SSE rules used
    here: `event:` names the next event, `data:` is one JSON line, a blank line ends it."""
    name, data = "message", None
    for line in lines:
        if line.startswith(":"):
            yield None
        elif line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data = json.loads(line.partition(":")[2])
        elif not line and data is not None:
            yield Event(name, data)
            name, data = "message", None


def read_stream(lines: Iterable[str]) -> Stream:
    stream = Stream()
    for event in parse_events(lines):
        if event is None:
            stream.comments += 1
        else:
            stream.events.append(event)
    return stream


def fold_nodes(waves: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tree the wave events describe: every node as last sent, by id."""
    nodes: dict[int, dict[str, Any]] = {}
    for wave in waves:
        for node in wave["nodes"]:
            nodes[node["id"]] = node
    return [nodes[key] for key in sorted(nodes)]
