"""Two BFD sessions wired together in memory, with a simulated clock and a lossy link."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from anycast_announcer.bfd import Session, StateChanged, Timers, Transmit


@dataclass
class Wire:
    """Packets in flight from one side: (arrival time, bytes)."""

    in_flight: list[tuple[float, bytes]] = field(default_factory=list)


@dataclass
class Pair:
    """Sessions ``a`` and ``b``; ``run_until`` moves time and carries packets."""

    a: Session
    b: Session
    now: float = 0.0
    latency: float = 0.001
    cut: Callable[[str, float], bool] = lambda side, now: False
    changes: dict[str, list[StateChanged]] = field(default_factory=lambda: {"a": [], "b": []})
    sent: dict[str, list[tuple[float, Transmit]]] = field(
        default_factory=lambda: {"a": [], "b": []}
    )
    wires: dict[str, Wire] = field(default_factory=lambda: {"a": Wire(), "b": Wire()})
    steps: int = 0

    def session(self, side: str) -> Session:
        return self.a if side == "a" else self.b

    def drain(self) -> None:
        """Move every effect of both sessions onto the wires and into the logs."""
        for side in ("a", "b"):
            for effect in self.session(side).effects():
                if isinstance(effect, StateChanged):
                    self.changes[side].append(effect)
                    continue
                self.sent[side].append((self.now, effect))
                if not self.cut(side, self.now):
                    self.wires[side].in_flight.append((self.now + self.latency, effect.data))

    def next_event(self) -> float | None:
        times = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        for wire in self.wires.values():
            times.extend(arrival for arrival, _ in wire.in_flight)
        return min(times) if times else None

    def run_until(self, end: float, max_steps: int = 200_000) -> None:
        self.drain()
        while (when := self.next_event()) is not None and when <= end:
            self.steps += 1
            assert self.steps < max_steps, "the sessions never go quiet"
            self.now = max(self.now, when)
            for side, other in (("a", "b"), ("b", "a")):
                wire = self.wires[side]
                due = [item for item in wire.in_flight if item[0] <= self.now]
                wire.in_flight = [item for item in wire.in_flight if item[0] > self.now]
                for _, data in due:
                    self.session(other).receive(data, self.now)
            for session in (self.a, self.b):
                timer = session.get_timer()
                if timer is not None and timer <= self.now:
                    session.handle_timer(self.now)
            self.drain()
        self.now = max(self.now, end)


def pair(
    timers_a: Timers | None = None,
    timers_b: Timers | None = None,
    *,
    seed: int = 1,
    start_b: float = 0.0,
) -> Pair:
    rng = random.Random(seed)
    a = Session(0x1111, timers_a or Timers(), now=0.0, jitter=rng.random)
    b = Session(0x2222, timers_b or Timers(), now=start_b, jitter=rng.random)
    return Pair(a, b)
