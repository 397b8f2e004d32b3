"""The rise/fall state machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.health import Health, HealthChange, ServiceHealth


class TestServiceHealth:
    def test_starts_unknown(self) -> None:
        """A service is neither up nor down until it has shown a full streak."""
        assert ServiceHealth("web", rise=2, fall=2).state is Health.UNKNOWN

    def test_goes_up_after_rise_successes(self) -> None:
        """Exactly ``rise`` consecutive successes bring a service up, with the reason."""
        machine = ServiceHealth("web", rise=3, fall=2)
        assert machine.observe(True, "connected") is None
        assert machine.observe(True, "connected") is None
        assert machine.observe(True, "connected") == HealthChange(
            "web", Health.UNKNOWN, Health.UP, "connected"
        )
        assert machine.state is Health.UP

    def test_goes_down_after_fall_failures(self) -> None:
        """Exactly ``fall`` consecutive failures take an up service down."""
        machine = ServiceHealth("web", rise=1, fall=2)
        machine.observe(True, "connected")
        assert machine.observe(False, "connect refused") is None
        change = machine.observe(False, "timeout after 0.5s")
        assert change == HealthChange("web", Health.UP, Health.DOWN, "timeout after 0.5s")

    def test_alternating_results_never_change_state(self) -> None:
        """Hysteresis: a flapping service with rise=fall=2 stays where it is."""
        machine = ServiceHealth("web", rise=2, fall=2)
        machine.observe(True, "ok")
        machine.observe(True, "ok")
        for _ in range(50):
            assert machine.observe(False, "refused") is None
            assert machine.observe(True, "ok") is None
        assert machine.state is Health.UP

    def test_repeated_results_report_no_change(self) -> None:
        """Once up, more successes are not changes (nothing to re-announce)."""
        machine = ServiceHealth("web", rise=1, fall=1)
        assert machine.observe(True, "ok") is not None
        assert all(machine.observe(True, "ok") is None for _ in range(10))

    def test_rejects_zero_thresholds(self) -> None:
        """rise and fall below one make no sense and are refused."""
        with pytest.raises(ValueError, match="at least 1"):
            ServiceHealth("web", rise=0, fall=1)


@given(
    rise=st.integers(1, 6),
    fall=st.integers(1, 6),
    results=st.lists(st.booleans(), max_size=200),
)
def test_state_changes_only_after_a_full_streak(rise: int, fall: int, results: list[bool]) -> None:
    """Invariant: a service changes state only on the rise-th success or fall-th failure
    in a row, and a reported change always matches the new state."""
    machine = ServiceHealth("svc", rise=rise, fall=fall)
    streak_value: bool | None = None
    streak = 0
    for ok in results:
        streak = streak + 1 if ok == streak_value else 1
        streak_value = ok
        before = machine.state
        change = machine.observe(ok, "r")
        if change is not None:
            assert streak >= (rise if ok else fall)
            assert change.old is before
            assert change.new is (Health.UP if ok else Health.DOWN)
            assert machine.state is change.new
        else:
            assert machine.state is before
        # Whenever a full streak has been seen, the state must reflect it.
        if streak >= (rise if ok else fall):
            assert machine.state is (Health.UP if ok else Health.DOWN)
