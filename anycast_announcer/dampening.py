"""Flap dampening for prefixes (pure; time is always an argument).

Theory of operation, after RFC 2439 but applied at the source: every withdrawal that
health caused adds a fixed penalty to the prefix; the penalty decays exponentially with a
half-life. While the penalty is above ``suppress`` the prefix is *suppressed*: it may not
be announced again until the penalty decays below ``reuse`` or ``max_suppress`` seconds
have passed since suppression began.

Dampening only ever delays announcements, never withdrawals: a sick server leaves the
fabric at once, a flapping one stays out until it has been calm for a while. That is what
protects established TCP sessions on *other* servers, which every re-announcement would
rehash.
"""

from __future__ import annotations

import math

from anycast_announcer.config import DampeningConfig

__all__ = ["PrefixDampening"]


class PrefixDampening:
    """The penalty and suppression state of one prefix."""

    __slots__ = ("_penalty", "_settings", "_suppressed_since", "_updated_at")

    def __init__(self, settings: DampeningConfig) -> None:
        self._settings = settings
        self._penalty = 0.0
        self._updated_at = 0.0
        self._suppressed_since: float | None = None

    def configure(self, settings: DampeningConfig) -> None:
        """Use new settings (a reload); the accumulated penalty carries on."""
        self._settings = settings

    def penalty(self, now: float) -> float:
        """The decayed penalty at ``now``."""
        elapsed = max(0.0, now - self._updated_at)
        return self._penalty * math.pow(0.5, elapsed / self._settings.half_life)

    def record_withdrawal(self, now: float) -> None:
        """Health withdrew the prefix: add a penalty, maybe start suppressing."""
        if not self._settings.enabled:
            return
        self._penalty = self.penalty(now) + self._settings.penalty
        self._updated_at = now
        if self._suppressed_since is None and self._penalty >= self._settings.suppress:
            self._suppressed_since = now

    def suppressed(self, now: float) -> bool:
        """Whether an announcement must wait at ``now`` (ends suppression when due)."""
        if self._suppressed_since is None:
            return False
        release = self.release_at()
        # Compare with the computed release time too, so float rounding can never leave
        # the prefix suppressed at the very deadline the supervisor woke up for.
        calm = self.penalty(now) < self._settings.reuse or (release is not None and now >= release)
        expired = now - self._suppressed_since >= self._settings.max_suppress
        if calm or expired:
            self._suppressed_since = None
            if expired:
                # Start over: a prefix released by the cap must earn suppression again.
                self._penalty = 0.0
                self._updated_at = now
            return False
        return True

    def release_at(self) -> float | None:
        """When suppression ends if nothing else happens (None when not suppressed)."""
        if self._suppressed_since is None:
            return None
        decayed = self._updated_at + self._settings.half_life * math.log2(
            self._penalty / self._settings.reuse
        )
        return min(decayed, self._suppressed_since + self._settings.max_suppress)
