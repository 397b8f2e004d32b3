"""Parsing what ExaBGP writes to its API process: acknowledgements and JSON events.

Sans-IO: ``ApiReader.feed(bytes)`` buffers and returns complete events; the caller owns the
socket. With ``exabgp.api.ack`` on, every command gets exactly one ``done`` or ``error``
line, in the order the commands were sent, so acks are matched first in, first out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Ack", "ApiEvent", "ApiReader", "NeighborState", "Shutdown", "Unparsed"]

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
class Shutdown:
    """ExaBGP is going away."""


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A line we do not act on (kept for logs)."""

    line: str


ApiEvent = Ack | NeighborState | Shutdown | Unparsed


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
    if message.get("type") == "state":
        neighbor = message.get("neighbor")
        if isinstance(neighbor, dict):
            address = neighbor.get("address")
            peer = address.get("peer") if isinstance(address, dict) else None
            state = neighbor.get("state")
            if isinstance(peer, str) and isinstance(state, str):
                reason = neighbor.get("reason", "")
                return NeighborState(peer, state, reason if isinstance(reason, str) else "")
    if message.get("notification") == "shutdown":
        return Shutdown()
    return None
