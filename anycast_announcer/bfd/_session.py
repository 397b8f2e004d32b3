"""One BFD session (RFC 5880, asynchronous mode), as a sans-IO machine.

Theory of operation. The shell feeds the machine three kinds of input, each with ``now``
(seconds on the shell's monotonic clock): a received datagram (``receive``), a timer
expiry (``handle_timer``, called at or after ``get_timer()``), and operator actions
(``set_timers``, ``admin_down``, ``admin_up``). The machine answers with effects, drained
by ``effects()``: ``Transmit`` (bytes for the peer, in order) and ``StateChanged``.

Rules we follow, by section of RFC 5880:

- §6.8.6 reception: the packet-only checks are in ``decode``; here a non-zero Your
  Discriminator must be ours. Then the remote variables are updated, a Final ends our Poll
  Sequence, and the state table below moves the session. A Poll is answered at once by a
  packet with Final set, outside the periodic schedule.
- State table (local state x received state -> new local state); anything not listed
  keeps the state. AdminDown locally ignores everything received.

      DOWN  + DOWN      -> INIT          INIT + INIT/UP -> UP
      DOWN  + INIT      -> UP            UP   + DOWN    -> DOWN (diag 3)
      any   + ADMIN_DOWN -> DOWN (diag 3), unless already DOWN

- §6.8.4 detection time = the remote's Detect Mult x max(our RequiredMinRxInterval, the
  remote's last Desired Min TX). Expiry in INIT or UP takes the session DOWN (diag 1);
  any expiry clears bfd.RemoteDiscr (§6.8.1).
- §6.8.3 while the session is not UP we advertise a Desired Min TX of at least 1 s; once
  UP, the configured value is put in force through a Poll Sequence, like any later change.
  During a Poll Sequence an increased transmit interval and a decreased receive interval
  stay at their old values until the Final arrives; the other directions apply at once.
  A change asked for while a Poll Sequence runs waits for it to end.
- §6.8.7 transmit interval = max(our Desired Min TX, the remote's Required Min RX),
  reduced by a random 0-25 % (10-25 % when Detect Mult is 1); a remote Required Min RX of
  zero means it wants no periodic packets.

We never run Demand mode or the Echo function (RFC 5881 sessions do not need either), and
never authenticate; a peer that asks for authentication is discarded by ``decode``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from anycast_announcer.bfd._packet import (
    BfdPacketError,
    ControlPacket,
    Diag,
    State,
    decode,
    encode,
)

__all__ = [
    "SLOW_TX_US",
    "Effect",
    "Session",
    "SessionSnapshot",
    "StateChanged",
    "Timers",
    "Transmit",
]

SLOW_TX_US = 1_000_000  # §6.8.3: the floor on Desired Min TX while the session is not UP
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Timers:
    """What we ask of a session, in seconds like every duration of the config."""

    min_tx: float = 0.3
    min_rx: float = 0.3
    multiplier: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.min_tx <= _MAX_INTERVAL_S or not 0 < self.min_rx <= _MAX_INTERVAL_S:
            raise ValueError(f"BFD intervals must be in (0, {_MAX_INTERVAL_S}] s: {self}")
        if not 1 <= self.multiplier <= 255:
            raise ValueError(f"BFD multiplier must be in 1..255: {self.multiplier}")

    @property
    def min_tx_us(self) -> int:
        """Desired Min TX on the wire."""
        return round(self.min_tx * _US)

    @property
    def min_rx_us(self) -> int:
        """Required Min RX on the wire."""
        return round(self.min_rx * _US)


_MAX_INTERVAL_S = 0xFFFF_FFFF / _US


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send these bytes to the peer now."""

    data: bytes
    packet: ControlPacket


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The session moved from ``old`` to ``new`` at ``at``, for the reason ``diag``."""

    old: State
    new: State
    diag: Diag
    at: float


Effect = Transmit | StateChanged


@dataclass(frozen=True, slots=True)
class SessionSnapshot:
    """What an operator wants to see of a session; intervals in seconds."""

    state: State
    remote_state: State
    local_discriminator: int
    remote_discriminator: int
    local_diag: Diag
    remote_diag: Diag
    transmit_interval: float | None  # negotiated, before jitter; None: the peer wants none
    detection_time: float | None  # None until the peer has told us its intervals
    remote_min_rx: float
    remote_min_tx: float | None
    remote_multiplier: int | None
    polling: bool
    packets_sent: int
    packets_received: int
    packets_discarded: int
    polls_completed: int  # our Poll Sequences ended by the peer's Final
    polls_answered: int  # the peer's Polls we answered with Final
    last_change: float | None


@dataclass(slots=True)
class _Remote:
    state: State = State.DOWN
    discriminator: int = 0
    diag: Diag = Diag.NONE
    min_rx_us: int = 1  # §6.8.1: initialised to 1 us, so we transmit before hearing anything
    min_tx_us: int | None = None
    multiplier: int | None = None
    demand: bool = False


@dataclass(slots=True)
class _Counters:
    sent: int = 0
    received: int = 0
    discarded: int = 0
    polls_completed: int = 0
    polls_answered: int = 0


@dataclass(slots=True)
class _Poll:
    """The intervals in force while a Poll Sequence runs (§6.8.3)."""

    tx_in_force_us: int
    rx_in_force_us: int
    running: bool = False
    queued: Timers | None = None


class Session:
    """One BFD session's state; see the module docstring for the rules."""

    def __init__(
        self,
        local_discriminator: int,
        timers: Timers,
        *,
        now: float,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        if not 0 < local_discriminator <= 0xFFFF_FFFF:
            raise ValueError(f"local discriminator {local_discriminator} outside 1..2^32-1")
        self._discriminator = local_discriminator
        self._timers = timers
        self._jitter = jitter if jitter is not None else random.SystemRandom().random
        self._state = State.DOWN
        self._diag = Diag.NONE
        self._remote = _Remote()
        self._counters = _Counters()
        self._desired_tx_us = max(timers.min_tx_us, SLOW_TX_US)
        self._required_rx_us = timers.min_rx_us
        self._poll = _Poll(self._desired_tx_us, self._required_rx_us)
        self._next_tx: float | None = now  # say hello at once
        self._detect_deadline: float | None = None
        self._last_change: float | None = None
        self._effects: list[Effect] = []

    # -- inputs ---------------------------------------------------------------------------

    def receive(self, data: bytes | ControlPacket, now: float) -> None:
        """A datagram from the peer; raises ``BfdPacketError`` (and counts it) if discarded."""
        try:
            packet = decode(data) if isinstance(data, bytes) else data
            if packet.your_discriminator not in (0, self._discriminator):
                raise BfdPacketError(
                    f"your discriminator {packet.your_discriminator} is not ours "
                    f"({self._discriminator})"
                )
        except BfdPacketError:
            self._counters.discarded += 1
            raise
        self._counters.received += 1
        old_interval = self._transmit_interval_us()
        self._remote.discriminator = packet.my_discriminator
        self._remote.state = packet.state
        self._remote.diag = packet.diag
        self._remote.demand = packet.demand
        self._remote.min_rx_us = packet.required_min_rx_us
        self._remote.min_tx_us = packet.desired_min_tx_us
        self._remote.multiplier = packet.detect_mult
        if packet.final and self._poll.running:
            self._counters.polls_completed += 1
            self._end_poll(now)
        if self._state is State.ADMIN_DOWN:
            return
        self._advance(packet.state, now)
        if packet.poll:
            self._counters.polls_answered += 1
            self._send(now, final=True)
        self._detect_deadline = now + self._detection_time_us() / _US
        self._reschedule_if_faster(old_interval, now)

    def handle_timer(self, now: float) -> None:
        """Run whatever is due at ``now``: detection expiry, then a periodic transmit."""
        if self._detect_deadline is not None and now >= self._detect_deadline:
            self._detect_deadline = None
            self._remote.discriminator = 0
            if self._state in (State.INIT, State.UP):
                self._change(State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, now)
        if self._next_tx is not None and now >= self._next_tx:
            if self._periodic_allowed():
                self._send(now, poll=self._poll.running)
            self._schedule_tx(now)

    def set_timers(self, timers: Timers, now: float) -> None:
        """Ask for new intervals; when UP they take effect through a Poll Sequence."""
        self._timers = timers
        if self._state is not State.UP:
            # No Poll needed: the peer is not relying on our intervals yet (§6.8.3).
            old_interval = self._transmit_interval_us()
            self._desired_tx_us = max(timers.min_tx_us, SLOW_TX_US)
            self._required_rx_us = timers.min_rx_us
            self._poll = _Poll(self._desired_tx_us, self._required_rx_us)
            self._reschedule_if_faster(old_interval, now)
            return
        if self._poll.running:
            self._poll.queued = timers
            return
        self._start_poll(timers, now)

    def admin_down(self, now: float) -> None:
        """Take the session AdminDown (diag 7) and tell the peer at once."""
        if self._state is State.ADMIN_DOWN:
            return
        self._change(State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN, now)
        self._detect_deadline = None
        self._send(now)

    def admin_up(self, now: float) -> None:
        """Leave AdminDown: the session starts again from DOWN."""
        if self._state is not State.ADMIN_DOWN:
            return
        self._change(State.DOWN, Diag.NONE, now)
        self._next_tx = now

    # -- outputs --------------------------------------------------------------------------

    def effects(self) -> list[Effect]:
        """The effects produced since the last call, oldest first."""
        out, self._effects = self._effects, []
        return out

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next run, or None if nothing is scheduled."""
        deadlines = [t for t in (self._next_tx, self._detect_deadline) if t is not None]
        return min(deadlines) if deadlines else None

    @property
    def next_transmit(self) -> float | None:
        """When the next periodic packet is due (for the shell's lateness figures)."""
        return self._next_tx

    @property
    def state(self) -> State:
        """bfd.SessionState."""
        return self._state

    @property
    def timers(self) -> Timers:
        """The intervals last asked for (in force once any Poll Sequence ends)."""
        return self._timers

    def snapshot(self) -> SessionSnapshot:
        """A frozen view for status, metrics and tests."""
        interval = self._transmit_interval_us()
        remote = self._remote
        return SessionSnapshot(
            state=self._state,
            remote_state=remote.state,
            local_discriminator=self._discriminator,
            remote_discriminator=remote.discriminator,
            local_diag=self._diag,
            remote_diag=remote.diag,
            transmit_interval=None if interval is None else interval / _US,
            detection_time=(None if remote.min_tx_us is None else self._detection_time_us() / _US),
            remote_min_rx=remote.min_rx_us / _US,
            remote_min_tx=None if remote.min_tx_us is None else remote.min_tx_us / _US,
            remote_multiplier=remote.multiplier,
            polling=self._poll.running,
            packets_sent=self._counters.sent,
            packets_received=self._counters.received,
            packets_discarded=self._counters.discarded,
            polls_completed=self._counters.polls_completed,
            polls_answered=self._counters.polls_answered,
            last_change=self._last_change,
        )

    # -- internals ------------------------------------------------------------------------

    def _advance(self, received: State, now: float) -> None:
        state = self._state
        if received is State.ADMIN_DOWN:
            if state is not State.DOWN:
                self._change(State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, now)
        elif state is State.DOWN:
            if received is State.DOWN:
                self._change(State.INIT, self._diag, now)
            elif received is State.INIT:
                self._change(State.UP, self._diag, now)
        elif state is State.INIT:
            if received in (State.INIT, State.UP):
                self._change(State.UP, self._diag, now)
        elif received is State.DOWN:  # state is UP
            self._change(State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, now)

    def _change(self, new: State, diag: Diag, now: float) -> None:
        old = self._state
        self._state = new
        self._diag = diag
        self._last_change = now
        self._effects.append(StateChanged(old, new, diag, now))
        if new is State.UP:
            if self._timers.min_tx_us < self._desired_tx_us:
                self._start_poll(self._timers, now)
        elif old is State.UP:
            # Not UP any more: back to the slow rate, and no Poll Sequence survives.
            self._desired_tx_us = max(self._timers.min_tx_us, SLOW_TX_US)
            self._required_rx_us = self._timers.min_rx_us
            self._poll = _Poll(self._desired_tx_us, self._required_rx_us)

    def _start_poll(self, timers: Timers, now: float) -> None:
        old_interval = self._transmit_interval_us()
        in_force_tx = min(self._poll.tx_in_force_us, timers.min_tx_us)
        in_force_rx = max(self._poll.rx_in_force_us, timers.min_rx_us)
        self._desired_tx_us = timers.min_tx_us
        self._required_rx_us = timers.min_rx_us
        self._poll = _Poll(in_force_tx, in_force_rx, running=True)
        self._send(now, poll=True)
        self._reschedule_if_faster(old_interval, now)

    def _end_poll(self, now: float) -> None:
        queued = self._poll.queued
        old_interval = self._transmit_interval_us()
        self._poll = _Poll(self._desired_tx_us, self._required_rx_us)
        self._reschedule_if_faster(old_interval, now)
        if queued is not None and self._state is State.UP:
            self._start_poll(queued, now)

    def _periodic_allowed(self) -> bool:
        remote = self._remote
        demand_quiet = (
            remote.demand
            and self._state is State.UP
            and remote.state is State.UP
            and not self._poll.running
        )
        return not demand_quiet

    def _transmit_interval_us(self) -> int | None:
        if self._remote.min_rx_us == 0:
            return None
        return max(self._poll.tx_in_force_us, self._remote.min_rx_us)

    def _detection_time_us(self) -> int:
        remote = self._remote
        # Only called once a packet has set both.
        assert remote.multiplier is not None
        assert remote.min_tx_us is not None
        return remote.multiplier * max(self._poll.rx_in_force_us, remote.min_tx_us)

    def _schedule_tx(self, now: float) -> None:
        interval = self._transmit_interval_us()
        if interval is None:
            self._next_tx = None
            return
        # §6.8.7: never more than the interval, never less than 75 % of it (90 % at x1).
        if self._timers.multiplier == 1:
            reduction = 0.10 + 0.15 * self._jitter()
        else:
            reduction = 0.25 * self._jitter()
        self._next_tx = now + interval * (1.0 - reduction) / _US

    def _reschedule_if_faster(self, old_interval: int | None, now: float) -> None:
        new_interval = self._transmit_interval_us()
        if new_interval is None:
            self._next_tx = None
        elif old_interval is None or new_interval < old_interval or self._next_tx is None:
            previous = self._next_tx
            self._schedule_tx(now)
            if previous is not None and self._next_tx is not None:
                self._next_tx = min(previous, self._next_tx)

    def _send(self, now: float, *, poll: bool = False, final: bool = False) -> None:
        del now  # kept in the signature: a transmit is always an event at a time
        packet = ControlPacket(
            state=self._state,
            my_discriminator=self._discriminator,
            your_discriminator=self._remote.discriminator,
            desired_min_tx_us=self._desired_tx_us,
            required_min_rx_us=self._required_rx_us,
            detect_mult=self._timers.multiplier,
            diag=self._diag,
            poll=poll and not final,
            final=final,
        )
        self._counters.sent += 1
        self._effects.append(Transmit(encode(packet), packet))
