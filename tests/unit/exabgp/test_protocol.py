"""Parsing ExaBGP's output: fed whole and one byte at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.exabgp.protocol import (
    Ack,
    ApiEvent,
    ApiReader,
    NeighborState,
    Unparsed,
    parse_line,
)

UP = (
    b'{ "exabgp": "5.0.0", "time": 1.0, "host" : "srv1", "pid" : 10, "ppid" : 1, '
    b'"counter": 1, "type": "state", "neighbor": { "address": { "local": "10.0.1.2", '
    b'"peer": "10.0.1.1" }, "asn": { "local": 65001, "peer": 65100 } , "state": "up" } }\n'
)
DOWN = (
    b'{ "exabgp": "5.0.0", "time": 1.0, "host" : "srv1", "pid" : 10, "ppid" : 1, '
    b'"counter": 2, "type": "state", "neighbor": { "address": { "local": "fd00:1::2", '
    b'"peer": "fd00:1::1" }, "asn": { "local": 65001, "peer": 65100 } , "state": "down", '
    b'"reason": "peer reset, message [closing connection]" } }\n'
)
STREAM = b"done\n" + UP + b"error\n" + DOWN + b"\n"
EXPECTED: list[ApiEvent] = [
    Ack(True),
    NeighborState("10.0.1.1", "up"),
    Ack(False),
    NeighborState("fd00:1::1", "down", "peer reset, message [closing connection]"),
]


def test_whole_stream() -> None:
    assert ApiReader().feed(STREAM) == EXPECTED


def test_byte_by_byte() -> None:
    """A line split anywhere still parses once, when its newline arrives."""
    reader = ApiReader()
    events: list[ApiEvent] = []
    for index in range(len(STREAM)):
        events += reader.feed(STREAM[index : index + 1])
    assert events == EXPECTED


@given(st.lists(st.integers(1, 40), min_size=1))
def test_any_chunking(sizes: list[int]) -> None:
    reader = ApiReader()
    events: list[ApiEvent] = []
    position = 0
    while position < len(STREAM):
        for size in sizes:
            events += reader.feed(STREAM[position : position + size])
            position += size
    assert events == EXPECTED


def test_partial_line_waits() -> None:
    assert ApiReader().feed(b"don") == []


@given(st.text())
def test_any_line_is_an_event_or_nothing(line: str) -> None:
    """Invariant: garbage from ExaBGP never raises, it becomes Unparsed."""
    result = parse_line(line.strip())
    assert result is None or isinstance(result, Ack | NeighborState | Unparsed)


def test_unknown_json_is_unparsed() -> None:
    assert parse_line('{"type": "update"}') == Unparsed('{"type": "update"}')
