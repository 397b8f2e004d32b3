"""Reregistration (rescue/reregistration.py): when owners empty ``registered`` again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.rescue.reregistration import Reregistration


class TestReregistration:
    def test_nothing_is_pending_before_a_bucket_map_change(self) -> None:
        """A start, or applies that kept the map, never empty the set again."""
        pending = Reregistration()
        assert pending.deadline is None
        assert not pending.expire(1e9)

    def test_due_once_the_delay_after_the_change(self) -> None:
        pending = Reregistration()
        pending.emptied(100.0, 5.0)
        assert pending.deadline == 105.0
        assert not pending.expire(104.999)
        assert pending.expire(105.0)
        # Once: the set registers again by itself from then on.
        assert pending.deadline is None
        assert not pending.expire(200.0)

    def test_a_further_change_before_the_deadline_moves_it(self) -> None:
        """The later apply emptied the set itself: the delay counts from it."""
        pending = Reregistration()
        pending.emptied(100.0, 5.0)
        pending.emptied(103.0, 5.0)
        assert not pending.expire(105.0)
        assert pending.expire(108.0)

    def test_zero_turns_it_off_and_drops_a_pending_one(self) -> None:
        pending = Reregistration()
        pending.emptied(100.0, 5.0)
        pending.emptied(101.0, 0.0)
        assert pending.deadline is None
        assert not pending.expire(1e9)

    def test_cancel_drops_a_pending_one(self) -> None:
        """The plan lost its directory (or its group): there is no set to empty."""
        pending = Reregistration()
        pending.emptied(100.0, 5.0)
        pending.cancel()
        assert not pending.expire(1e9)

    def test_a_negative_delay_is_a_bug(self) -> None:
        with pytest.raises(ValueError, match="must not be negative"):
            Reregistration().emptied(0.0, -1.0)

    @given(
        st.lists(st.tuples(st.floats(0, 1e6), st.floats(0, 600)), min_size=1, max_size=20).map(
            sorted
        )
    )
    def test_fires_at_most_once_and_never_before_the_last_change_plus_its_delay(
        self, changes: list[tuple[float, float]]
    ) -> None:
        pending = Reregistration()
        for now, delay in changes:
            pending.emptied(now, delay)
        last, delay = changes[-1]
        times = (last, last + delay / 2, last + delay, last + delay + 1)
        fired = [t for t in times if pending.expire(t)]
        assert fired == ([last + delay] if delay > 0 else [])
