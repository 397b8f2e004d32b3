"""The bounded in-memory history: what it records, what it answers, and its memory ceiling."""

from __future__ import annotations

import gc
import ipaddress
import logging
import time
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from anycast_announcer.checks import ProbeResult
from anycast_announcer.core import Instant, SidecarCore
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    AddressChanged,
    DrainFileChanged,
    ProbeCompleted,
    SessionChanged,
)
from anycast_announcer.history import CHANGES_KEPT, REASON_CHARS, History
from anycast_announcer.metrics import RescueCounters as MetricCounters
from anycast_announcer.metrics import RescuePeerCounters
from anycast_announcer.status import PrefixState
from anycast_announcer.supervisor import _RescueTap
from tests.memory import deep_size
from tests.unit.core.helpers import BASE, LOG, PEER, PREFIX, Harness, config

T0 = 1_789_999_800.0
"""A round Unix time (a multiple of 300 s), so bucket boundaries are easy to state."""


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """The core logs every change; a day of them at 1 Hz would be minutes of printing."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def _ok(latency: float) -> fx.ProbeRecorded:
    return fx.ProbeRecorded("web", ProbeResult(True, latency, "connected"))


def _failed() -> fx.ProbeRecorded:
    return fx.ProbeRecorded("web", ProbeResult(False, 0.5, "timeout after 0.5s"))


class TestChanges:
    def test_records_changes_with_their_reasons_oldest_first(self) -> None:
        history = History(T0)
        history.observe(fx.PrefixChanged(PREFIX, "withdrawn", False, "service web unknown"), T0)
        history.observe(fx.PrefixChanged(PREFIX, "announced", True, "services up"), T0 + 5)
        history.observe(fx.ServiceChanged("web", False, "probe: refused"), T0 + 7)
        history.observe(fx.PeerChanged(PEER, True, "session established"), T0 + 8)
        snap = history.snapshot("hour", T0 + 60)
        (prefix,) = snap.prefixes
        assert [(c.at - T0, c.state, c.reason) for c in prefix.changes] == [
            (0, "withdrawn", "service web unknown"),
            (5, "announced", "services up"),
        ]
        assert snap.services[0].changes[0].reason == "probe: refused"
        assert snap.peers[0].changes[0].state == "up"
        assert [c.name for c in snap.latest_changes(2)] == ["web", PEER]

    def test_keeps_the_state_in_force_when_the_window_starts(self) -> None:
        """A prefix announced two hours ago shows announced over the whole last hour."""
        history = History(T0)
        history.observe(fx.PrefixChanged(PREFIX, "announced", True, "services up"), T0)
        history.observe(fx.PrefixChanged(PREFIX, "withdrawn", False, "down"), T0 + 7000)
        snap = history.snapshot("hour", T0 + 7200)
        assert [c.state for c in snap.prefixes[0].changes] == ["announced", "withdrawn"]
        assert snap.prefixes[0].changes[0].at < snap.since
        assert [c.state for c in snap.latest_changes(10)] == ["withdrawn"]

    def test_a_repeated_state_is_not_a_change(self) -> None:
        history = History(T0)
        for second in range(3):
            history.observe(fx.PeerChanged(PEER, False, "not established yet"), T0 + second)
        assert len(history.snapshot("hour", T0 + 10).peers[0].changes) == 1

    def test_keeps_the_latest_changes_and_says_from_when_the_list_is_complete(self) -> None:
        history = History(T0)
        flips = CHANGES_KEPT + 30
        for second in range(flips):
            up = second % 2 == 0
            history.observe(fx.ServiceChanged("web", up, f"flip {second}"), T0 + second)
        (service,) = history.snapshot("hour", T0 + flips).services
        assert len(service.changes) == CHANGES_KEPT
        assert service.changes[-1].reason == f"flip {flips - 1}"
        assert service.complete_since == T0 + 30
        # The counts still cover every change, dropped or not.
        assert sum(service.change_buckets.count) == flips

    def test_buckets_keep_the_states_around_their_changes(self) -> None:
        """Enough to draw a timeline where the exact changes were dropped."""
        history = History(T0)
        history.observe(fx.PrefixChanged(PREFIX, "withdrawn", False, "start"), T0 + 1)
        history.observe(fx.PrefixChanged(PREFIX, "announced", True, "up"), T0 + 2)
        history.observe(fx.PrefixChanged(PREFIX, "draining", False, "drain"), T0 + 31)
        history.observe(fx.PrefixChanged(PREFIX, "drained", False, "drain"), T0 + 35)
        hour = history.snapshot("hour", T0 + 40)
        buckets = hour.change_buckets(hour.prefixes[0])
        assert [(b.start - T0, b.changes, b.state_before, b.state_after) for b in buckets] == [
            (0, 2, None, "announced"),
            (30, 2, "announced", "drained"),
        ]
        day = history.snapshot("day", T0 + 40)
        (bucket,) = day.change_buckets(day.prefixes[0])
        assert (bucket.changes, bucket.state_before, bucket.state_after) == (4, None, "drained")

    def test_cuts_long_reasons(self) -> None:
        history = History(T0)
        history.observe(fx.ServiceChanged("web", False, "x" * 10_000), T0)
        reason = history.snapshot("hour", T0).services[0].changes[0].reason
        assert len(reason) == REASON_CHARS
        assert reason.endswith("\u2026")

    def test_a_removed_subject_loses_its_history(self) -> None:
        history = History(T0)
        history.observe(fx.ServiceChanged("web", True, "up"), T0)
        history.observe(fx.PrefixChanged(PREFIX, "announced", True, "up"), T0)
        history.observe(fx.Unconfigured(services=("web",), prefixes=(PREFIX,), peers=()), T0 + 1)
        snap = history.snapshot("hour", T0 + 2)
        assert (snap.services, snap.prefixes) == ((), ())


class TestProbes:
    def test_downsamples_latency_and_counts_failures_per_bucket(self) -> None:
        history = History(T0)
        history.observe(_ok(0.002), T0 + 1)
        history.observe(_ok(0.004), T0 + 2)
        history.observe(_failed(), T0 + 3)
        history.observe(_ok(0.010), T0 + 11)
        hour = history.snapshot("hour", T0 + 20)
        assert len(hour.services[0].probes.probes) == hour.bucket_count == 360
        buckets = hour.probe_buckets(hour.services[0])
        assert [(b.start - T0, b.probes, b.failures) for b in buckets] == [(0, 3, 1), (10, 1, 0)]
        assert buckets[0].latency_mean == pytest.approx(0.003)
        assert buckets[0].latency_max == pytest.approx(0.004)
        day = history.snapshot("day", T0 + 20)
        assert day.bucket_seconds == 300
        assert [(b.probes, b.failures) for b in day.probe_buckets(day.services[0])] == [(4, 1)]

    def test_a_bucket_of_failures_only_has_no_latency(self) -> None:
        history = History(T0)
        history.observe(_failed(), T0)
        hour = history.snapshot("hour", T0)
        (bucket,) = hour.probe_buckets(hour.services[0])
        assert (bucket.latency_mean, bucket.latency_max) == (None, None)

    def test_old_buckets_leave_the_window_and_their_slots_are_reused(self) -> None:
        history = History(T0)
        history.observe(_ok(0.001), T0)
        history.observe(_ok(0.009), T0 + 3600)  # same slot of the hour ring, an hour later
        hour = history.snapshot("hour", T0 + 3600)
        buckets = hour.probe_buckets(hour.services[0])
        assert [(b.start - T0, b.latency_max) for b in buckets] == [(3600, 0.009)]
        day = history.snapshot("day", T0 + 3600)
        assert [b.start - T0 for b in day.probe_buckets(day.services[0])] == [0, 3600]

    def test_a_sample_from_before_a_clock_step_back_is_dropped(self) -> None:
        history = History(T0)
        history.observe(_ok(0.001), T0 + 3600)
        history.observe(_ok(0.5), T0)  # the slot now holds a newer bucket
        hour = history.snapshot("hour", T0 + 3600)
        buckets = hour.probe_buckets(hour.services[0])
        assert [(b.start - T0, b.probes) for b in buckets] == [(3600, 1)]


class TestRescue:
    def test_counts_increments_after_a_baseline_and_survives_a_reset(self) -> None:
        history = History(T0)
        assert history.snapshot("hour", T0).rescue is None
        history.rescue_counters(handed_over=1000, rescued=50, at=T0)  # baseline
        history.rescue_counters(handed_over=1200, rescued=50, at=T0 + 5)
        history.rescue_counters(handed_over=30, rescued=55, at=T0 + 12)  # data path re-created
        snap = history.snapshot("hour", T0 + 20)
        rescue = snap.rescue
        assert rescue is not None
        handed = snap.count_buckets(rescue.handed_over)
        assert [(b.start - T0, b.amount) for b in handed] == [(0, 200), (10, 30)]
        assert [(b.start - T0, b.amount) for b in snap.count_buckets(rescue.rescued)] == [(10, 5)]
        history.rescue_forgotten()
        assert history.snapshot("hour", T0 + 20).rescue is None


def _retained(build: Callable[[], None]) -> int:
    """The bytes ``build()`` left allocated (traced)."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    build()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def _flap(history: History, start: int, stop: int) -> None:
    """What the core reports of a service, its prefix and a session flapping every second
    (the reasons the core gives), a probe per second, rescue counting packets."""
    down = (
        fx.ServiceChanged("web", False, "probe: connect refused"),
        fx.PrefixChanged(PREFIX, "withdrawn", False, "service web down (probe: connect refused)"),
        fx.PeerChanged(PEER, False, "hold timer expired"),
        fx.ProbeRecorded("web", ProbeResult(False, 0.5, "connect refused")),
    )
    up = (
        fx.ServiceChanged("web", True, "probe: connected"),
        fx.PrefixChanged(PREFIX, "announced", True, "services up"),
        fx.PeerChanged(PEER, True, "session established"),
        fx.ProbeRecorded("web", ProbeResult(True, 0.002, "connected")),
    )
    for second in range(start, stop):
        at = T0 + second
        for effect in up if second % 2 else down:
            history.observe(effect, at)
        if second % 5 == 0:  # as often as the shell reads rescue's counters
            history.rescue_counters(second * 7, second, at)


class TestMemoryCeiling:
    def test_a_day_of_flapping_at_1_hz_holds_no_more_than_its_first_hour(self) -> None:
        """A simulated day (the clock is a parameter: this takes about a second) of a
        prefix, its service and a session flapping every second: once the first hour has
        filled the rings and the change lists, the history stops growing."""
        history = History(T0)
        # Traced over two hours (tracing is slow): the second leaves nothing behind.
        tracemalloc.start()
        try:
            _retained(lambda: _flap(history, 0, 3600))
            second_hour = _retained(lambda: _flap(history, 3600, 7200))
        finally:
            tracemalloc.stop()
        first_hours = deep_size(history)
        # The rest of the day untraced, and the whole object graph weighed.
        _flap(history, 7200, 86400)
        whole_day = deep_size(history)

        day = history.snapshot("day", T0 + 86399)
        # It really flapped all day: every change is counted, the latest are exact.
        assert sum(day.prefixes[0].change_buckets.count) == 86400
        assert sum(day.services[0].probes.probes) == 86400
        assert len(day.prefixes[0].changes) == CHANGES_KEPT
        assert day.prefixes[0].complete_since == T0 + 86400 - CHANGES_KEPT
        # The ceiling: what the first hour built is all there is after a day.
        assert second_hour < 1024, f"{second_hour} bytes stayed after the second hour"
        # (Give or take which float objects happen to be shared between subjects.)
        assert whole_day <= first_hours + 4096, f"{first_hours} B after 2 h, {whole_day} B a day"
        assert whole_day < 400_000, f"three subjects and rescue hold {whole_day} bytes"

    @pytest.mark.usefixtures("quiet_logs")
    def test_a_drain_says_who_drained(self) -> None:
        """The core's prefix changes name the drain's origin, for "drained by whom?"."""
        harness = Harness()
        harness.healthy()
        harness.feed(DrainFileChanged(True), 1.0)
        while (deadline := harness.core.get_timer()) is not None:
            harness.tick(deadline)
        changes = [(e.state, e.reason) for e in harness.of_type(fx.PrefixChanged)]
        assert changes[-2:] == [
            ("draining", "draining (waiting_connections): drain file present (by the drain file)"),
            ("drained", "drained: drain file present (by the drain file)"),
        ]

    @pytest.mark.usefixtures("quiet_logs")
    def test_the_real_core_feeds_it_what_it_observes(self) -> None:
        """Ten minutes of a flapping service through the decision core itself."""
        data = {
            **BASE,
            "services": [{**BASE["services"][0], "rise": 1, "fall": 1}],
            "prefixes": [{**BASE["prefixes"][0], "dampening": {"enabled": False}}],
        }
        core = SidecarCore(config(data), Instant(0.0, T0), logger=LOG)
        address = ipaddress.ip_network(PREFIX).network_address
        results = (ProbeResult(True, 0.002, "connected"), ProbeResult(False, 0.5, "refused"))
        history = History(T0)
        start = Instant(0.0, T0)
        effects = core.start(start) + core.handle_all(
            [AddressChanged("lo", address, True), SessionChanged(PEER, True, "up")], start
        )
        for second in range(600):
            now = Instant(float(second), T0 + second)
            effects += core.handle(ProbeCompleted("web", results[second % 2]), now)
            for effect in effects:
                history.observe(effect, now.wall)
            effects = []
        snap = history.snapshot("hour", T0 + 600)
        (prefix,) = snap.prefixes
        assert sum(prefix.change_buckets.count) == 601  # withdrawn at start, then flaps
        assert prefix.changes[-1].reason == "service web down (probe: refused)"
        assert [c.state for c in snap.peers[0].changes] == ["down", "up"]
        assert sum(snap.services[0].probes.failures) == 300


DAY = 86_400
_EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=2 * DAY),
        st.sampled_from(["probe_ok", "probe_failed", "up", "down", "announced", "withdrawn"]),
    ),
    max_size=300,
)


class TestProperties:
    @settings(max_examples=60, deadline=None)
    @given(_EVENTS)
    def test_counts_match_what_was_fed_within_the_window(
        self, events: list[tuple[float, str]]
    ) -> None:
        """In time order, every probe and change inside a window is counted, once."""
        history = History(T0)
        events = sorted(events)
        for offset, what in events:
            history.observe(_effect(what), T0 + offset)
        now = T0 + 2 * DAY
        for window in ("hour", "day"):
            snap = history.snapshot(window, now)
            inside = [what for offset, what in events if T0 + offset >= snap.first_bucket_start]
            probes = sum(snap.services[0].probes.probes) if snap.services else 0
            assert probes == sum(1 for what in inside if what.startswith("probe"))
            for timeline in (*snap.prefixes, *snap.services):
                assert len(timeline.changes) <= CHANGES_KEPT + 1
            for service in snap.services:
                columns = service.probes.model_dump().values()
                assert {len(column) for column in columns} == {snap.bucket_count}

    @settings(max_examples=60, deadline=None)
    @given(_EVENTS)
    def test_any_order_of_times_is_taken_without_error(
        self, events: list[tuple[float, str]]
    ) -> None:
        """A wall clock that steps back loses samples, never raises, never miscounts up."""
        history = History(T0)
        for offset, what in events:
            history.observe(_effect(what), T0 + offset)
        snap = history.snapshot("day", T0 + 2 * DAY)
        fed = sum(1 for _, what in events if what.startswith("probe"))
        assert (sum(snap.services[0].probes.probes) if snap.services else 0) <= fed


def _effect(what: str) -> fx.Effect:
    if what.startswith("probe"):
        return _ok(0.002) if what == "probe_ok" else _failed()
    if what in {"up", "down"}:
        return fx.ServiceChanged("web", what == "up", what)
    state: PrefixState = "announced" if what == "announced" else "withdrawn"
    return fx.PrefixChanged(PREFIX, state, what == "announced", what)


class TestRescueTap:
    def test_readings_reach_the_metrics_and_the_history(self) -> None:
        """The supervisor's tap: handed over = sum of packets sent to peers, rescued =
        sum received; no reading (rescue unconfigured) forgets the series."""
        history = History(T0)
        seen: list[MetricCounters | None] = []

        class Sink:
            def probe_started(self, lag: float) -> None: ...
            def record(self, effect: fx.Effect) -> None: ...
            def rescue_counters(self, counters: MetricCounters | None) -> None:
                seen.append(counters)

        def reading(sent: int, received: int) -> MetricCounters:
            peers = {
                peer: RescuePeerCounters(sent, received, sent * 1400, received * 1400)
                for peer in ("10.0.2.2", "10.0.3.2")
            }
            return MetricCounters(installed=True, peers=peers)

        tap = _RescueTap(Sink(), history)
        tap.rescue_counters(reading(10, 1))
        tap.rescue_counters(reading(15, 4))
        assert len(seen) == 2
        snap = history.snapshot("hour", time.time())
        assert snap.rescue is not None
        assert (sum(snap.rescue.handed_over), sum(snap.rescue.rescued)) == (2 * 5, 2 * 3)
        tap.rescue_counters(None)
        assert seen[-1] is None
        assert history.snapshot("hour", time.time()).rescue is None
