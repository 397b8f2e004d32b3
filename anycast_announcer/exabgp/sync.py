"""Keeping ExaBGP's routes equal to the desired set, as a state machine (sans-IO).

Theory of operation. ExaBGP answers every API command with exactly one ``done`` or
``error`` line, in the order the commands were sent, and reports BGP session changes on
the same stream. ``RouteSync`` holds what that protocol needs:

- ``desired``: what the core wants each session to carry;
- ``acknowledged``: what ExaBGP said ``done`` to, per session; diffing the two gives the
  commands to send (``commands.plan_commands``), so only differences ever go out;
- ``rejected``: announcements ExaBGP refused (``error``): a bug of our encoding, not
  retried until the route changes or the session flaps, so one bad line cannot loop;
- the sessions that are up;
- the commands in flight, oldest first.

One batch is in flight at a time: ``commands_to_send`` hands out the next batch only
when every command of the previous one was answered.

Answers and session events arrive on one ordered stream, written by one process, so an
answer tells us the state of the sessions when ExaBGP executed the command: exactly the
session events read before it. A session event forgets what the session carried (ExaBGP
keeps no adj-rib-out for us, so a flapped session carries nothing of ours), and an
announcement answered while its session is down put nothing on the wire: neither is
acknowledged, and the session's next "up" makes them go out again. An announcement sent
before a flap and answered after the session came back up is on the new session, and is
acknowledged: forgetting it would leave a route on the wire that no later diff withdraws.

An answer with nothing in flight means the stream is out of step (a command split in
two, a reply we cannot pair): ``ProtocolError``, and the driver restarts ExaBGP, which
starts this machine again from nothing acknowledged.

The driver (``driver.py``) owns the process, the socket and the backoff, and calls
``on_connected``, ``on_ack``, ``on_neighbor``, ``on_shutdown`` and ``on_disconnected``
as things happen.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from anycast_announcer.exabgp.commands import Command, plan_commands
from anycast_announcer.routes import Route, RouteKey

__all__ = ["AckOutcome", "AckResult", "ProtocolError", "RouteSync", "SessionChange"]


class ProtocolError(Exception):
    """ExaBGP's answers no longer pair with our commands; only a restart resynchronises."""


class AckResult(enum.Enum):
    """What an answer did."""

    ANNOUNCED = "announced"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"
    """ExaBGP answered ``error``."""
    SESSION_DOWN = "session_down"
    """An announcement executed while its session was down: nothing went on the wire."""


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """An answer, paired with the command it answers."""

    command: Command
    result: AckResult


@dataclass(frozen=True, slots=True)
class SessionChange:
    """A session went up or down, as the core should hear it."""

    peer: str
    up: bool
    reason: str


class RouteSync:
    """What ExaBGP holds, what it should hold, and the commands in between."""

    def __init__(self) -> None:
        self._desired: dict[RouteKey, Route] = {}
        self._acknowledged: dict[RouteKey, Route] = {}
        self._rejected: dict[RouteKey, Route] = {}
        self._sessions_up: set[str] = set()
        self._in_flight: deque[Command] = deque()
        self._connected = False

    # -- reading -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether an ExaBGP is connected to us now."""
        return self._connected

    @property
    def in_flight(self) -> int:
        """Commands sent and not answered yet."""
        return len(self._in_flight)

    @property
    def sessions_up(self) -> frozenset[str]:
        """Peers whose session is established."""
        return frozenset(self._sessions_up)

    @property
    def acknowledged(self) -> Mapping[RouteKey, Route]:
        """What ExaBGP said ``done`` to (read-only view)."""
        return self._acknowledged

    @property
    def desired(self) -> Mapping[RouteKey, Route]:
        """What the sessions should carry (read-only view)."""
        return self._desired

    @property
    def synced(self) -> bool:
        """Nothing more to send: ExaBGP holds what it can hold of the desired set.

        Without an ExaBGP nothing of ours is announced, so only an empty desired set is
        in sync then.
        """
        if not self._connected:
            return not self._desired
        return not self._in_flight and not self._pending()

    # -- inputs ------------------------------------------------------------------------

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> bool:
        """Replace the desired set; whether it changed."""
        if dict(routes) == self._desired:
            return False
        self._desired = dict(routes)
        return True

    def on_connected(self) -> None:
        """A new ExaBGP connected: it holds nothing and knows no session yet."""
        self._reset()
        self._connected = True

    def on_disconnected(self) -> list[SessionChange]:
        """ExaBGP is gone: every session with it went down."""
        changes = [
            SessionChange(peer, False, "exabgp stopped") for peer in sorted(self._sessions_up)
        ]
        self._reset()
        return changes

    def on_shutdown(self) -> list[SessionChange]:
        """ExaBGP announced that it is going away (its sessions close with it)."""
        changes = [
            SessionChange(peer, False, "exabgp shutting down") for peer in sorted(self._sessions_up)
        ]
        self._reset()
        return changes

    def on_neighbor(self, peer: str, state: str, reason: str) -> SessionChange | None:
        """A session event; the change for the core, if the session went up or down.

        Whatever the session did, it carries nothing of ours now, so its acknowledged
        and rejected routes are forgotten (the next batch re-sends them).
        """
        for table in (self._acknowledged, self._rejected):
            for key in [key for key in table if key.peer == peer]:
                del table[key]
        was_up = peer in self._sessions_up
        if state == "up":
            self._sessions_up.add(peer)
        else:
            self._sessions_up.discard(peer)
        if was_up == (state == "up"):
            return None
        return SessionChange(peer, state == "up", reason or state)

    def on_ack(self, ok: bool) -> AckOutcome:
        """ExaBGP answered the oldest command in flight; raises ProtocolError if none is."""
        if not self._in_flight:
            raise ProtocolError(f"unexpected {'done' if ok else 'error'}: no command in flight")
        command = self._in_flight.popleft()
        key = command.key
        if command.route is not None and key.peer not in self._sessions_up:
            return AckOutcome(command, AckResult.SESSION_DOWN)
        if not ok:
            if command.route is not None:
                self._rejected[key] = command.route
            else:
                self._acknowledged.pop(key, None)
            return AckOutcome(command, AckResult.REJECTED)
        self._rejected.pop(key, None)
        if command.route is None:
            self._acknowledged.pop(key, None)
            return AckOutcome(command, AckResult.WITHDRAWN)
        self._acknowledged[key] = command.route
        return AckOutcome(command, AckResult.ANNOUNCED)

    def commands_to_send(self) -> list[Command]:
        """The next batch (marked in flight), or nothing while a batch is unanswered."""
        if not self._connected or self._in_flight:
            return []
        batch = self._pending()
        self._in_flight.extend(batch)
        return batch

    # -- internals ---------------------------------------------------------------------

    def _pending(self) -> list[Command]:
        return [
            command
            for command in plan_commands(self._desired, self._acknowledged)
            if command.route is None
            # A session that just went down is still in the desired set until the core
            # hears of it; announcing into it would only be acked, not sent. Its "up"
            # triggers the real send.
            or (
                command.key.peer in self._sessions_up
                and self._rejected.get(command.key) != command.route
            )
        ]

    def _reset(self) -> None:
        self._acknowledged.clear()
        self._rejected.clear()
        self._sessions_up.clear()
        self._in_flight.clear()
        self._connected = False
