"""The start-up gate (pure): a new member announces its anycast prefixes only once it
knows its group and its data path holds it.

Theory of operation. With ``rescue.membership``, a sidecar learns the other members of
its group from their member routes. A brand-new member that announced its anycast
prefixes before it learnt them would receive flows the fabric moves from the others and
could not rescue them: with no peer in its data path they sit in probation, dropped, and
are reset as orphans. So, while learnt membership is on, the anycast prefixes wait
behind this gate (member routes do not: the others must learn us):

    WAITING_FOR_EOR ──End-of-RIB──► WAITING_FOR_DATA_PATH ──applied plan holds──► OPEN
           └────────────── gate_timeout after the first session came up ──────────┘

- *Known*: an End-of-RIB for the underlay's family from an established, configured
  peer says that peer sent its whole table, so every member route it carries is in.
  One peer is enough: the leaves reflect the same member routes to every server.
- *Applied*: a rescue plan the keeper applied holds every learnt member (the first
  server of a group, with none, passes on the End-of-RIB alone).
- *Bounded*: ``gate_timeout`` seconds after the first established session (before one,
  nothing can be announced, so nothing needs bounding) the gate opens anyway, with a
  warning and a counter. Failing open is right here: a leaf that sends no End-of-RIB
  (``bgp graceful-restart disable-eor``, or a system that sends it only to peers it
  helps restart) or a data path that cannot be applied would otherwise keep a healthy
  server out of service for good, whereas the harm of opening early is a few reset
  flows in the first seconds, which is what every start risked before the gate.

Once open, the gate stays open for the life of the process: later session flaps and
ExaBGP restarts find the member set already learnt and held down (``Membership``), so
they have nothing to wait for. A reload that turns membership on finds a running
server, possibly announcing: the gate opens at once rather than withdraw a serving
prefix; the member routes the sessions already carry are learnt in the same step.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

from anycast_announcer.core.inputs import Instant
from anycast_announcer.core.logs import Logger
from anycast_announcer.status import RescueGateState, RescueGateStatus

__all__ = ["GateState", "OpenedBy", "StartGate"]


class GateState(enum.StrEnum):
    """Where the gate stands (``/status`` shows the value)."""

    WAITING_FOR_EOR = "waiting_for_eor"
    WAITING_FOR_DATA_PATH = "waiting_for_data_path"
    OPEN = "open"


_NAMES: dict[GateState, RescueGateState] = {
    GateState.WAITING_FOR_EOR: "waiting_for_eor",
    GateState.WAITING_FOR_DATA_PATH: "waiting_for_data_path",
    GateState.OPEN: "open",
}


class OpenedBy(enum.StrEnum):
    """Why the gate opened."""

    END_OF_RIB = "end_of_rib"
    TIMEOUT = "timeout"
    RELOAD = "reload"
    """Membership was configured while the process ran (the gate was never closed)."""
    UNCONFIGURED = "unconfigured"
    """A reload removed membership while the gate was closed: nothing to wait for."""


class StartGate:
    """The anycast prefixes' start-up gate; owned by ``SidecarCore``."""

    def __init__(self, closed: bool, timeout: float, now: Instant, logger: Logger) -> None:
        self._log = logger
        self._timeout = timeout
        self._state = GateState.WAITING_FOR_EOR if closed else GateState.OPEN
        self._opened_by: OpenedBy | None = None if closed else OpenedBy.RELOAD
        self._since = now.wall
        self._armed_at: float | None = None
        """Monotonic time the first BGP session came up while closed."""

    # -- reading -----------------------------------------------------------------------

    @property
    def state(self) -> GateState:
        """The current state."""
        return self._state

    @property
    def name(self) -> RescueGateState:
        """The current state's name, as ``/status`` and the metric show it."""
        return _NAMES[self._state]

    @property
    def opened_by(self) -> str | None:
        """Why the gate opened; None while closed."""
        return self._opened_by.value if self._opened_by is not None else None

    @property
    def open(self) -> bool:
        """Whether anycast prefixes may be announced."""
        return self._state is GateState.OPEN

    def deadline(self) -> float | None:
        """When the gate opens by itself (monotonic); None when open or not armed."""
        if self.open or self._armed_at is None:
            return None
        return self._armed_at + self._timeout

    def status(self, now: Instant) -> RescueGateStatus:
        """What ``/status`` shows."""
        deadline = self.deadline()
        return RescueGateStatus(
            state=self.name,
            since=self._since,
            opened_by=self.opened_by,
            opens_in=None if deadline is None else max(0.0, deadline - now.monotonic),
        )

    # -- inputs (each returns whether the gate opened) ----------------------------------

    def configure(self, timeout: float) -> None:
        """A reload's ``gate_timeout``; an armed deadline moves with it."""
        self._timeout = timeout

    def session_up(self, now: Instant) -> None:
        """A BGP session was established: from now on announcing is possible, so the
        wait is bounded (only the first session arms the deadline)."""
        if not self.open and self._armed_at is None:
            self._armed_at = now.monotonic

    def end_of_rib(self, peer: str, family: str, now: Instant) -> None:
        """An accepted End-of-RIB (the caller checked the peer and the family)."""
        if self._state is not GateState.WAITING_FOR_EOR:
            return
        self._log.info("rescue_gate_members_known", peer=peer, family=family)
        self._move(GateState.WAITING_FOR_DATA_PATH, now)

    def data_path(
        self, learnt: Collection[str], installed: Collection[str] | None, now: Instant
    ) -> bool:
        """Open if the member set is known and ``installed`` (the peers of the plan last
        applied, None before any) holds every ``learnt`` member."""
        if self._state is not GateState.WAITING_FOR_DATA_PATH or installed is None:
            return False
        if not set(learnt) <= set(installed):
            return False
        self._opened(OpenedBy.END_OF_RIB, now, members=sorted(learnt))
        return True

    def expire(self, now: Instant) -> bool:
        """The deadline passed: open anyway (fail open, see the module docstring)."""
        deadline = self.deadline()
        if deadline is None or now.monotonic < deadline:
            return False
        self._log.warning(
            "rescue_gate_timeout",
            waiting_for=self._state.value,
            timeout=self._timeout,
            action="announcing without a known group",
        )
        self._opened(OpenedBy.TIMEOUT, now)
        return True

    def unconfigured(self, now: Instant) -> bool:
        """A reload removed learnt membership: nothing left to wait for."""
        if self.open:
            return False
        self._opened(OpenedBy.UNCONFIGURED, now)
        return True

    def _opened(self, by: OpenedBy, now: Instant, **fields: object) -> None:
        self._opened_by = by
        self._move(GateState.OPEN, now)
        waited = None if self._armed_at is None else round(now.monotonic - self._armed_at, 3)
        self._log.info("rescue_gate_opened", opened_by=by.value, waited=waited, **fields)

    def _move(self, state: GateState, now: Instant) -> None:
        self._state = state
        self._since = now.wall
