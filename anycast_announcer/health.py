"""Service health: the rise/fall state machine.

Theory of operation: every probe result is one observation. A service starts ``unknown``
(never announced) and moves to ``up`` after ``rise`` consecutive successes or to ``down``
after ``fall`` consecutive failures. One result of the other kind resets the streak, so a
service that alternates never changes state: that is the hysteresis that keeps a flapping
service from flapping routes. A kernel event that proves the service gone (its listener
closed, its process exited) needs no confirmation: ``fail_now`` takes it down at once,
and it still needs ``rise`` successes to come back. No I/O and no clock here: the shell
feeds results and events in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Health", "HealthChange", "ServiceHealth"]


class Health(enum.Enum):
    """What we currently believe about a service."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A service changed state because of the result that completed a streak."""

    service: str
    old: Health
    new: Health
    reason: str


class ServiceHealth:
    """Rise/fall hysteresis for one service."""

    __slots__ = ("failures", "fall", "name", "rise", "state", "successes")

    def __init__(self, name: str, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.name = name
        self.rise = rise
        self.fall = fall
        self.state = Health.UNKNOWN
        self.successes = 0
        self.failures = 0

    def observe(self, ok: bool, reason: str) -> HealthChange | None:
        """Take one probe result; return the change it caused, if any."""
        if ok:
            self.successes += 1
            self.failures = 0
            if self.state is not Health.UP and self.successes >= self.rise:
                return self._move(Health.UP, reason)
        else:
            self.failures += 1
            self.successes = 0
            if self.state is not Health.DOWN and self.failures >= self.fall:
                return self._move(Health.DOWN, reason)
        return None

    def fail_now(self, reason: str) -> HealthChange | None:
        """Down at once (the failure is certain, not a probe's opinion)."""
        self.successes = 0
        self.failures = max(self.failures, self.fall)
        if self.state is Health.DOWN:
            return None
        return self._move(Health.DOWN, reason)

    @property
    def changing(self) -> bool:
        """A streak is under way that would change the state if it held (rise/fall)."""
        if self.failures:
            return self.state is not Health.DOWN
        return self.successes > 0 and self.state is not Health.UP

    def _move(self, new: Health, reason: str) -> HealthChange:
        change = HealthChange(self.name, self.state, new, reason)
        self.state = new
        return change
