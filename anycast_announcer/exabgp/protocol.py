"""Parsing what ExaBGP writes to its API process: acknowledgements and JSON events.

Sans-IO: ``ApiReader.feed(bytes)`` buffers and returns complete events; the caller owns the
socket. With ``exabgp.api.ack`` on, every command gets exactly one ``done`` or ``error``
line, in the order the commands were sent, so acks are matched first in, first out.

With ``api { receive { parsed; update; } }`` (rescue membership), ExaBGP also writes every
UPDATE a peer sends as JSON: ``{"type": "update", "neighbor": {"address": {"peer": P},
"direction": "receive", "message": {"update": {"attribute": {"community": [[A, B]]},
"announce": {"ipv4 unicast": {NEXTHOP: [{"nlri": X}]}}, "withdraw": {"ipv4 unicast":
[{"nlri": X}]}}}}}``, and an End-of-RIB marker as ``"message": {"eor": {"afi": ..,
"safi": ..}}``. Anything of another shape is ``Unparsed``: a peer's update never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Ack",
    "ApiEvent",
    "ApiReader",
    "EndOfRib",
    "NeighborState",
    "ReceivedRoute",
    "RoutesReceived",
    "Shutdown",
    "Unparsed",
]

MAX_LINE = 1 << 20


@dataclass(frozen=True, slots=True)
class Ack:
    """ExaBGP's answer to the oldest unanswered command."""

    ok: bool


@dataclass(frozen=True, slots=True)
class NeighborState:
    """A BGP session changed state (``connected``, ``up``, ``down``)."""

    peer: str
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ReceivedRoute:
    """One prefix a peer announced, with the standard communities it carried."""

    prefix: str
    communities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RoutesReceived:
    """A peer's UPDATE: prefixes announced (or replaced) and prefixes withdrawn."""

    peer: str
    announced: tuple[ReceivedRoute, ...]
    withdrawn: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """A peer finished sending its table for one family (``ipv4 unicast``...)."""

    peer: str
    family: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """ExaBGP is going away."""


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A line we do not act on (kept for logs)."""

    line: str


ApiEvent = Ack | NeighborState | RoutesReceived | EndOfRib | Shutdown | Unparsed


class ApiReader:
    """Turns the byte stream from ExaBGP into events."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[ApiEvent]:
        """Buffer ``data``; return the events of every complete line."""
        self._buffer += data
        events: list[ApiEvent] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    events.append(Unparsed(self._buffer[:200].decode(errors="replace")))
                    self._buffer.clear()
                return events
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            event = parse_line(raw.decode("utf-8", errors="replace").strip())
            if event is not None:
                events.append(event)


def parse_line(line: str) -> ApiEvent | None:
    """One line from ExaBGP as an event; None for blank lines."""
    if not line:
        return None
    if line == "done":
        return Ack(ok=True)
    if line == "error":
        return Ack(ok=False)
    if not line.startswith("{"):
        return Unparsed(line)
    return _parse_json(line) or Unparsed(line)


def _parse_json(line: str) -> ApiEvent | None:
    """A JSON message we act on (a session change, a shutdown), or None."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("notification") == "shutdown":
        return Shutdown()
    neighbor = message.get("neighbor")
    if not isinstance(neighbor, dict):
        return None
    address = neighbor.get("address")
    peer = address.get("peer") if isinstance(address, dict) else None
    if not isinstance(peer, str):
        return None
    if message.get("type") == "state":
        state = neighbor.get("state")
        if isinstance(state, str):
            reason = neighbor.get("reason", "")
            return NeighborState(peer, state, reason if isinstance(reason, str) else "")
    if message.get("type") == "update" and neighbor.get("direction") == "receive":
        body = neighbor.get("message")
        if isinstance(body, dict):
            return _parse_update(peer, body)
    return None


def _parse_update(peer: str, body: dict[str, Any]) -> ApiEvent | None:
    """A received UPDATE (or End-of-RIB) message body; None if it has neither."""
    eor = body.get("eor")
    if isinstance(eor, dict):
        return EndOfRib(peer, f"{eor.get('afi', '')} {eor.get('safi', '')}".strip())
    update = body.get("update")
    if not isinstance(update, dict):
        return None
    attributes = update.get("attribute")
    communities = _communities(
        attributes.get("community") if isinstance(attributes, dict) else None
    )
    announced: list[ReceivedRoute] = []
    for by_nexthop in _families(update.get("announce")):
        if isinstance(by_nexthop, dict):
            for nlris in by_nexthop.values():
                announced += (ReceivedRoute(p, communities) for p in _prefixes(nlris))
    withdrawn = [p for nlris in _families(update.get("withdraw")) for p in _prefixes(nlris)]
    if not announced and not withdrawn:
        return None
    return RoutesReceived(peer, tuple(announced), tuple(withdrawn))


def _families(section: object) -> list[object]:
    """The per-family values of an ``announce`` / ``withdraw`` section."""
    return list(section.values()) if isinstance(section, dict) else []


def _prefixes(nlris: object) -> list[str]:
    """Prefixes of an NLRI list: objects ``{"nlri": X}`` or, with api.compact, strings."""
    if not isinstance(nlris, list):
        return []
    found: list[str] = []
    for nlri in nlris:
        value = nlri.get("nlri") if isinstance(nlri, dict) else nlri
        if isinstance(value, str):
            found.append(value)
    return found


def _communities(value: object) -> tuple[str, ...]:
    """``[[A, B], ...]`` as ``("A:B", ...)``; anything malformed is left out."""
    if not isinstance(value, list):
        return ()
    return tuple(
        f"{pair[0]}:{pair[1]}"
        for pair in value
        if isinstance(pair, list)
        and len(pair) == 2  # a standard community is two 16-bit halves
        and all(isinstance(half, int) and not isinstance(half, bool) for half in pair)
    )
