"""The BFD session machine (RFC 5880): two sessions pumped together in memory."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anycast_announcer.bfd import (
    BfdPacketError,
    ControlPacket,
    Diag,
    Session,
    State,
    Timers,
    Transmit,
    decode,
    encode,
)
from tests.unit.bfd.pump import Pair, pair


def up_pair(timers_a: Timers | None = None, timers_b: Timers | None = None) -> Pair:
    link = pair(timers_a, timers_b)
    link.run_until(5.0)
    assert link.a.state is State.UP
    assert link.b.state is State.UP
    return link


def periodic_gaps(link: Pair, side: str, since: float) -> list[float]:
    times = [
        t for t, tx in link.sent[side] if t >= since and not tx.packet.final and not tx.packet.poll
    ]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


class TestBringUp:
    def test_two_sessions_come_up_through_the_three_way_handshake(self) -> None:
        """DOWN -> INIT -> UP on one side, DOWN -> UP on the other, within the slow rate."""
        link = pair()
        link.run_until(5.0)
        paths = {side: [(c.old, c.new) for c in link.changes[side]] for side in ("a", "b")}
        assert sorted(paths.values()) == [
            [(State.DOWN, State.INIT), (State.INIT, State.UP)],
            [(State.DOWN, State.UP)],
        ] or paths["a"] == paths["b"] == [(State.DOWN, State.INIT), (State.INIT, State.UP)]
        assert max(c.at for c in link.changes["a"] + link.changes["b"]) < 2.5

    def test_negotiates_the_configured_intervals_once_up(self) -> None:
        """UP ends the 1 s slow start through a Poll Sequence: 0.3 s x 3 in force."""
        link = up_pair()
        for session in (link.a, link.b):
            view = session.snapshot()
            assert view.polling is False
            assert view.transmit_interval == pytest.approx(0.3)
            assert view.detection_time == pytest.approx(0.9)
            assert view.remote_min_tx == pytest.approx(0.3)
        assert link.a.snapshot().remote_discriminator == 0x2222
        assert link.b.snapshot().remote_discriminator == 0x1111

    def test_advertises_at_least_one_second_while_not_up(self) -> None:
        """§6.8.3: every packet sent before UP asks for no faster than 1 s."""
        link = pair()
        link.run_until(5.0)
        up_at = link.changes["a"][-1].at
        before = [tx.packet for t, tx in link.sent["a"] if t < up_at]
        assert before
        assert all(p.desired_min_tx_us >= 1_000_000 for p in before)

    def test_the_slower_side_sets_the_pace(self) -> None:
        """Transmit interval = max(our Desired Min TX, the peer's Required Min RX)."""
        link = up_pair(Timers(0.1, 0.1, 3), Timers(0.3, 0.5, 4))
        assert link.a.snapshot().transmit_interval == pytest.approx(0.5)
        assert link.b.snapshot().transmit_interval == pytest.approx(0.3)
        # a detects b after b's mult x max(a's min_rx, b's min_tx) = 4 x 0.3
        assert link.a.snapshot().detection_time == pytest.approx(1.2)
        assert link.b.snapshot().detection_time == pytest.approx(1.5)


class TestJitter:
    def test_periodic_packets_are_75_to_100_percent_of_the_interval(self) -> None:
        """§6.8.7 with Detect Mult > 1."""
        link = up_pair()
        start = link.now
        link.run_until(start + 30.0)
        gaps = periodic_gaps(link, "a", start)
        assert len(gaps) > 90
        assert min(gaps) >= 0.75 * 0.3 - 1e-9
        assert max(gaps) <= 0.3 + 1e-9
        assert max(gaps) - min(gaps) > 0.05  # really jittered, not a fixed fraction

    def test_multiplier_one_stays_within_75_to_90_percent(self) -> None:
        """§6.8.7: with Detect Mult 1 no packet may come later than 90 % of the interval."""
        link = up_pair(Timers(0.3, 0.3, 1), Timers())
        start = link.now
        link.run_until(start + 30.0)
        gaps = periodic_gaps(link, "a", start)
        assert gaps
        assert min(gaps) >= 0.75 * 0.3 - 1e-9
        assert max(gaps) <= 0.9 * 0.3 + 1e-9


class TestDetection:
    def test_a_silent_peer_is_declared_down_within_the_detection_time(self) -> None:
        """Both sides go DOWN with diag 1 once nothing arrives for mult x interval."""
        link = up_pair()
        cut_at = link.now
        link.cut = lambda side, now: now >= cut_at
        link.run_until(cut_at + 3.0)
        for side in ("a", "b"):
            down = link.changes[side][-1]
            assert down.new is State.DOWN
            assert down.diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
            # the last packet arrived at most one interval before the cut
            assert cut_at + 0.9 - 0.3 <= down.at <= cut_at + 0.9 + 0.01
        assert link.a.snapshot().remote_discriminator == 0

    def test_a_peer_that_says_down_takes_us_down_with_diag_3(self) -> None:
        """A received DOWN while UP: 'neighbor signaled session down'."""
        link = up_pair()
        peer = ControlPacket(State.DOWN, 0x2222, 0x1111, 1_000_000, 300_000, 3)
        link.a.receive(encode(peer), link.now)
        [change] = [e for e in link.a.effects() if not isinstance(e, Transmit)]
        assert (change.new, change.diag) == (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)

    def test_comes_back_up_after_the_link_heals(self) -> None:
        """A cut longer than the detection time is a DOWN, then a new bring-up."""
        link = up_pair()
        cut_at = link.now
        link.cut = lambda side, now: cut_at <= now < cut_at + 2.0
        link.run_until(cut_at + 8.0)
        assert link.a.state is State.UP
        assert link.b.state is State.UP
        assert [c.new for c in link.changes["a"]][-2:] in (
            [State.INIT, State.UP],
            [State.DOWN, State.UP],
        )


class TestPollSequence:
    def test_a_slower_transmit_waits_for_the_final(self) -> None:
        """§6.8.3: an increased Desired Min TX is not used until the peer's Final."""
        link = up_pair()
        link.latency = 0.05  # room to look inside the sequence
        link.a.set_timers(Timers(0.6, 0.3, 3), link.now)
        link.drain()
        poll = link.sent["a"][-1][1].packet
        assert poll.poll
        assert poll.desired_min_tx_us == 600_000
        assert link.a.snapshot().polling
        assert link.a.snapshot().transmit_interval == pytest.approx(0.3)
        link.run_until(link.now + 1.0)
        assert not link.a.snapshot().polling
        assert link.a.snapshot().transmit_interval == pytest.approx(0.6)
        assert link.b.snapshot().detection_time == pytest.approx(1.8)
        finals = [tx.packet for _, tx in link.sent["b"] if tx.packet.final]
        assert finals
        assert link.a.snapshot().polls_completed == 2  # the one after UP, then ours
        assert link.b.snapshot().polls_answered >= 2  # every packet with P gets an F

    def test_a_shorter_receive_interval_keeps_the_old_detection_time_until_final(self) -> None:
        """§6.8.3: a reduced Required Min RX is not used for detection before the Final."""
        link = up_pair(Timers(0.3, 0.3, 3), Timers(0.1, 0.1, 3))
        link.latency = 0.05
        assert link.a.snapshot().detection_time == pytest.approx(0.9)
        link.a.set_timers(Timers(0.3, 0.1, 3), link.now)
        assert link.a.snapshot().detection_time == pytest.approx(0.9)
        link.run_until(link.now + 1.0)
        assert link.a.snapshot().detection_time == pytest.approx(0.3)
        assert link.b.snapshot().transmit_interval == pytest.approx(0.1)

    def test_a_change_during_a_poll_waits_for_it_to_end(self) -> None:
        """A second change starts its own Poll Sequence after the first one's Final."""
        link = up_pair()
        link.latency = 0.05
        link.a.set_timers(Timers(0.5, 0.3, 3), link.now)
        link.a.set_timers(Timers(0.2, 0.2, 5), link.now)
        link.run_until(link.now + 2.0)
        polls = [tx.packet for _, tx in link.sent["a"] if tx.packet.poll]
        assert {p.desired_min_tx_us for p in polls} >= {500_000, 200_000}
        view = link.a.snapshot()
        assert not view.polling
        assert view.transmit_interval == pytest.approx(0.3)  # b still wants 0.3
        assert link.b.snapshot().detection_time == pytest.approx(5 * 0.3)
        assert link.b.snapshot().remote_min_tx == pytest.approx(0.2)
        assert link.b.snapshot().remote_multiplier == 5
        assert link.a.state is State.UP
        assert link.b.state is State.UP

    def test_changes_while_down_apply_without_a_poll(self) -> None:
        """No Poll before UP: nobody relies on our intervals yet."""
        session = Session(7, Timers(), now=0.0, jitter=lambda: 0.0)
        session.set_timers(Timers(0.05, 0.05, 3), 0.0)
        assert not session.snapshot().polling
        assert not any(isinstance(e, Transmit) and e.packet.poll for e in session.effects())

    def test_the_peer_changing_its_timers_is_answered_with_final(self) -> None:
        """A received Poll gets an immediate packet with Final, outside the schedule."""
        link = up_pair()
        link.b.set_timers(Timers(0.1, 0.1, 3), link.now)
        link.run_until(link.now + 1.0)
        assert any(tx.packet.final for _, tx in link.sent["a"])
        assert link.a.snapshot().transmit_interval == pytest.approx(0.3)
        assert link.b.snapshot().transmit_interval == pytest.approx(0.3)
        assert link.a.snapshot().detection_time == pytest.approx(0.9)
        assert link.a.state is State.UP


class TestAdminDown:
    def test_admin_down_takes_the_peer_down_with_diag_3(self) -> None:
        """We say ADMIN_DOWN (diag 7); the peer goes DOWN (diag 3), not by expiry."""
        link = up_pair()
        link.a.admin_down(link.now)
        link.run_until(link.now + 0.5)
        assert link.a.state is State.ADMIN_DOWN
        assert link.changes["a"][-1].diag is Diag.ADMINISTRATIVELY_DOWN
        assert link.changes["b"][-1].new is State.DOWN
        assert link.changes["b"][-1].diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
        link.run_until(link.now + 5.0)
        assert link.a.state is State.ADMIN_DOWN  # packets from the peer do not move it

    def test_admin_up_brings_the_session_back(self) -> None:
        link = up_pair()
        link.a.admin_down(link.now)
        link.run_until(link.now + 2.0)
        link.a.admin_up(link.now)
        link.run_until(link.now + 5.0)
        assert link.a.state is State.UP
        assert link.b.state is State.UP


class TestReception:
    def test_a_foreign_your_discriminator_is_discarded_and_counted(self) -> None:
        session = Session(7, Timers(), now=0.0)
        packet = ControlPacket(State.UP, 9, 8, 300_000, 300_000, 3)
        with pytest.raises(BfdPacketError, match="not ours"):
            session.receive(encode(packet), 0.0)
        assert session.snapshot().packets_discarded == 1
        assert session.state is State.DOWN

    def test_garbage_is_discarded_and_counted(self) -> None:
        session = Session(7, Timers(), now=0.0)
        with pytest.raises(BfdPacketError):
            session.receive(b"\xff" * 24, 0.0)
        assert session.snapshot().packets_discarded == 1

    def test_a_peer_wanting_no_packets_gets_none(self) -> None:
        """Required Min RX 0: no periodic transmission (§6.8.7)."""
        session = Session(7, Timers(), now=0.0, jitter=lambda: 0.0)
        session.receive(encode(ControlPacket(State.DOWN, 9, 0, 1_000_000, 0, 3)), 0.0)
        session.effects()
        assert session.get_timer() == pytest.approx(3.0)  # the detection timer only
        session.handle_timer(3.0)
        assert not [e for e in session.effects() if isinstance(e, Transmit)]

    def test_says_hello_at_once_and_then_at_the_slow_rate(self) -> None:
        session = Session(7, Timers(), now=10.0, jitter=lambda: 0.0)
        assert session.get_timer() == 10.0
        session.handle_timer(10.0)
        [hello] = session.effects()
        assert isinstance(hello, Transmit)
        assert decode(hello.data).state is State.DOWN
        assert session.get_timer() == pytest.approx(11.0)

    def test_bad_parameters_are_local_errors(self) -> None:
        with pytest.raises(ValueError, match="discriminator"):
            Session(0, Timers(), now=0.0)
        with pytest.raises(ValueError, match="multiplier"):
            Timers(0.3, 0.3, 0)
        with pytest.raises(ValueError, match="intervals"):
            Timers(0.0, 0.3, 3)


intervals = st.sampled_from([0.05, 0.1, 0.2, 0.3, 0.5, 1.0])
timers = st.builds(Timers, intervals, intervals, st.integers(2, 5))


class TestProperties:
    @settings(max_examples=40, deadline=None)
    @given(timers, timers, st.integers(0, 2**32))
    def test_a_healthy_link_comes_up_and_never_goes_down(
        self, timers_a: Timers, timers_b: Timers, seed: int
    ) -> None:
        """Any timers, any jitter: UP within a few seconds, then no DOWN for a minute."""
        link = pair(timers_a, timers_b, seed=seed)
        link.run_until(6.0)
        assert link.a.state is State.UP
        assert link.b.state is State.UP
        link.run_until(66.0)
        for side in ("a", "b"):
            assert all(c.new is not State.DOWN for c in link.changes[side])
        assert not link.a.snapshot().polling

    @settings(max_examples=40, deadline=None)
    @given(intervals, st.integers(1, 5), st.floats(0.0, 1.0), st.integers(0, 2**32))
    def test_a_dead_peer_is_detected_within_the_detection_time(
        self, interval: float, mult: int, phase: float, seed: int
    ) -> None:
        """Silence from the peer is a DOWN no later than detection time after its last word."""
        link = pair(Timers(interval, interval, mult), Timers(interval, interval, mult), seed=seed)
        link.run_until(6.0)
        cut_at = link.now + phase
        link.cut = lambda side, now: side == "b" and now >= cut_at
        link.run_until(cut_at + 10.0)
        down = [c for c in link.changes["a"] if c.new is State.DOWN]
        assert down
        last_heard = max(t for t, _ in link.sent["b"] if t < cut_at) + link.latency
        assert down[0].at == pytest.approx(last_heard + mult * interval, abs=1e-6)
