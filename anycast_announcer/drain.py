"""Draining a prefix without breaking the sessions on it (pure; time is an argument).

Theory of operation. With ECMP, the moment this server's path leaves a switch's
forwarding table, every session still hashed to it lands on another server, which resets
it. So a drain removes the path last, after the sessions are gone:

  hook                 the drain hook asks the application to shed its connections (close
                       idle keep-alives, send GOAWAY); the route stays exactly as it was
  waiting_connections  until established connections to the prefix's ports fall to the
                       threshold, or the connection timeout passes
  graceful_shutdown    re-announced with GRACEFUL_SHUTDOWN 65535:0 (RFC 8326): receivers
                       drop the path's preference to zero, so new flows move elsewhere
                       while the path still exists as a backup (no black hole while the
                       fabric converges)
  withdrawn            after the hold, the route is withdrawn; it stays so until undrain

Undrain from any phase returns to normal announcements (if healthy).

Where a drain came from is data (``DrainOrigin``), not text: the drain file's
disappearance ends only the drains the file started, and only the drains an operator
asked for (directly or restored from the state file) are persisted.
"""

from __future__ import annotations

import enum

from anycast_announcer.config import DrainConfig

__all__ = ["DrainOrigin", "DrainPhase", "PrefixDrain"]


class DrainPhase(enum.Enum):
    """Where a prefix is in its drain."""

    NONE = "none"
    HOOK = "hook"
    WAITING_CONNECTIONS = "waiting_connections"
    GRACEFUL_SHUTDOWN = "graceful_shutdown"
    WITHDRAWN = "withdrawn"


class DrainOrigin(enum.Enum):
    """Who started a drain."""

    OPERATOR = "operator"
    """The API or CLI; persisted until undrain."""
    DRAIN_FILE = "drain_file"
    """``drain.drain_file`` exists; ends when the file goes, never persisted."""
    RESTORED = "restored"
    """An operator's drain persisted by a previous run."""


class PrefixDrain:
    """The drain state of one prefix."""

    __slots__ = (
        "_settings",
        "connections",
        "origin",
        "phase",
        "phase_since",
        "reason",
        "started_at",
    )

    def __init__(self, settings: DrainConfig) -> None:
        self._settings = settings
        self.phase = DrainPhase.NONE
        self.reason: str | None = None
        self.origin: DrainOrigin | None = None
        self.started_at: float | None = None
        """Wall-clock (Unix) time the drain began, for operators and the state file."""
        self.phase_since = 0.0
        self.connections: int | None = None

    def configure(self, settings: DrainConfig) -> None:
        """Use new settings (a reload); the phase carries on."""
        self._settings = settings

    @property
    def active(self) -> bool:
        """Whether a drain is in progress or done (not undrained)."""
        return self.phase is not DrainPhase.NONE

    @property
    def announce_normally(self) -> bool:
        """The route is sent exactly as without a drain (before the sessions are gone)."""
        return self.phase in (DrainPhase.NONE, DrainPhase.HOOK, DrainPhase.WAITING_CONNECTIONS)

    @property
    def graceful_shutdown(self) -> bool:
        """The route carries GRACEFUL_SHUTDOWN."""
        return self.phase is DrainPhase.GRACEFUL_SHUTDOWN

    @property
    def persistent(self) -> bool:
        """Whether the drain must survive a restart (an operator asked for it)."""
        return self.active and self.origin is not DrainOrigin.DRAIN_FILE

    def start(self, now: float, reason: str, origin: DrainOrigin, started_at: float) -> bool:
        """Begin draining; False if a drain is already under way (nothing changes).

        ``now`` is the monotonic time that phase deadlines count from; ``started_at``
        the wall-clock time shown to operators.
        """
        if self.active:
            return False
        self.reason = reason
        self.origin = origin
        self.started_at = started_at
        self.connections = None
        first = (
            DrainPhase.HOOK if self._settings.hook is not None else (DrainPhase.WAITING_CONNECTIONS)
        )
        self._enter(first, now)
        return True

    def restore_withdrawn(self, now: float, reason: str, started_at: float) -> None:
        """A drain persisted by a previous run: straight to withdrawn, no hook again."""
        self.start_withdrawn(now, reason, DrainOrigin.RESTORED, started_at)

    def start_withdrawn(
        self, now: float, reason: str, origin: DrainOrigin, started_at: float
    ) -> None:
        """A drain of a prefix never announced (restored, or added by a reload while the
        drain file exists): no sessions to shed, so straight to withdrawn."""
        self.reason = reason
        self.origin = origin
        self.started_at = started_at
        self.connections = None
        self._enter(DrainPhase.WITHDRAWN, now)

    def hook_finished(self, now: float) -> None:
        """The hook returned (success or not: a failed hook must not block the drain)."""
        if self.phase is DrainPhase.HOOK:
            self._enter(DrainPhase.WAITING_CONNECTIONS, now)

    def connections_counted(self, now: float, count: int) -> None:
        """A fresh count of established connections to the prefix's ports."""
        if self.phase is not DrainPhase.WAITING_CONNECTIONS:
            return
        self.connections = count
        if count <= self._settings.connection_threshold:
            self._enter(DrainPhase.GRACEFUL_SHUTDOWN, now)

    def tick(self, now: float) -> None:
        """Advance timed phases whose deadline has passed."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return
        if self.phase is DrainPhase.WAITING_CONNECTIONS:
            self._enter(DrainPhase.GRACEFUL_SHUTDOWN, now)
            deadline = self.deadline()
        if self.phase is DrainPhase.GRACEFUL_SHUTDOWN and deadline is not None and now >= deadline:
            self._enter(DrainPhase.WITHDRAWN, now)

    def deadline(self) -> float | None:
        """When a timed phase ends by itself (None when nothing is timed)."""
        if self.phase is DrainPhase.WAITING_CONNECTIONS:
            return self.phase_since + self._settings.connection_timeout
        if self.phase is DrainPhase.GRACEFUL_SHUTDOWN:
            return self.phase_since + self._settings.graceful_shutdown_hold
        return None

    def undrain(self) -> bool:
        """Back to normal; False if there was no drain."""
        if not self.active:
            return False
        self.phase = DrainPhase.NONE
        self.reason = None
        self.origin = None
        self.started_at = None
        self.connections = None
        return True

    def _enter(self, phase: DrainPhase, now: float) -> None:
        self.phase = phase
        self.phase_since = now
