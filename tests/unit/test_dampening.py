"""Flap dampening: penalties, suppression, release; withdrawals are never delayed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.config import DampeningConfig
from anycast_announcer.dampening import PrefixDampening

DEFAULTS = DampeningConfig()  # penalty 1000, half-life 15, suppress 2500, reuse 750


class TestPrefixDampening:
    def test_two_flaps_do_not_suppress(self) -> None:
        damp = PrefixDampening(DEFAULTS)
        damp.record_withdrawal(0.0)
        damp.record_withdrawal(1.0)
        assert not damp.suppressed(1.0)

    def test_three_quick_flaps_suppress(self) -> None:
        damp = PrefixDampening(DEFAULTS)
        for now in (0.0, 0.1, 0.2):
            damp.record_withdrawal(now)
        assert damp.suppressed(0.3)

    def test_penalty_halves_every_half_life(self) -> None:
        damp = PrefixDampening(DEFAULTS)
        damp.record_withdrawal(100.0)
        assert damp.penalty(115.0) == pytest.approx(500.0)
        assert damp.penalty(130.0) == pytest.approx(250.0)

    def test_released_when_penalty_decays_below_reuse(self) -> None:
        """3000 decays to 750 in two half-lives: released at +30 s, not before."""
        damp = PrefixDampening(DEFAULTS)
        for _ in range(3):
            damp.record_withdrawal(0.0)
        release = damp.release_at()
        assert release is not None
        assert release == pytest.approx(30.0)
        assert damp.suppressed(29.9)
        assert not damp.suppressed(release)  # exactly at the deadline the loop wakes for
        assert damp.release_at() is None

    def test_max_suppress_caps_the_wait(self) -> None:
        settings = DampeningConfig(max_suppress=10, half_life=60)
        damp = PrefixDampening(settings)
        for _ in range(5):
            damp.record_withdrawal(0.0)
        assert damp.release_at() == pytest.approx(10.0)
        assert damp.suppressed(9.0)
        assert not damp.suppressed(10.0)
        assert damp.penalty(10.0) == 0.0  # must earn suppression again

    def test_disabled_never_suppresses(self) -> None:
        damp = PrefixDampening(DampeningConfig(enabled=False))
        for now in range(20):
            damp.record_withdrawal(float(now))
        assert not damp.suppressed(20.0)


@given(st.lists(st.floats(0, 300, allow_nan=False), max_size=40))
def test_release_deadline_is_honest(times: list[float]) -> None:
    """Invariant: while suppressed, release_at() is in the future and not later than the
    cap; at release_at() the prefix is free (so the supervisor never spins)."""
    damp = PrefixDampening(DEFAULTS)
    for now in sorted(times):
        damp.record_withdrawal(now)
        if damp.suppressed(now):
            release = damp.release_at()
            assert release is not None
            assert now <= release <= now + DEFAULTS.max_suppress
    release = damp.release_at()
    if release is not None:
        assert not damp.suppressed(release)
