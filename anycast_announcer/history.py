"""The sidecar's recent past, in memory, within a fixed ceiling (pure: no I/O, no clock).

Theory of operation. The supervisor hands every observation the decision core reports
(``core.effects``: prefix, service and session changes, probe results, names a reload
removed) to ``History.observe`` with the wall-clock time, and rescue's cumulative packet
counters to ``History.rescue_counters`` each time the shell reads them. ``snapshot``
answers ``GET /history`` for the last hour or day.

Why the memory is bounded whatever the uptime, and by how much:

- State changes are exact (time, state, reason) but only the latest ``CHANGES_KEPT`` of
  each subject are kept, reasons cut to ``REASON_CHARS``. A prefix flapping for a day
  keeps its last few minutes of changes, and says from when its list is complete.
- Everything counted (changes per subject, probes, failures, latency, rescued packets) goes
  into two rings of buckets per series, 10 s x 360 (the hour) and 5 min x 288 (the day),
  preallocated as flat arrays when the subject first appears: a day of flapping writes
  into the same slots an idle day does.
- Subjects are the configured prefixes, services and peers: a reload that removes one
  removes its history (``Unconfigured``), so the count follows the configuration.

Buckets are keyed by wall-clock time because people read them as times of day. A sample
older than what its slot already holds (the clock stepped back) is dropped rather than
mixed into a newer bucket.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from anycast_announcer.core import effects as fx
from anycast_announcer.historymodels import (
    ChangeBuckets,
    ChangeKind,
    HistoryChange,
    HistoryWindow,
    ProbeSeries,
    RescueHistory,
    ServiceHistory,
    SidecarHistory,
    StateTimeline,
)

__all__ = ["CHANGES_KEPT", "REASON_CHARS", "RESOLUTIONS", "History", "Resolution"]

_Dense = tuple[list[int], list[int], list[float], list[float]]
"""Per bucket of a window, oldest first: count, failures, total and peak."""

CHANGES_KEPT = 120
"""Exact state changes kept per subject (at 1 Hz flapping: the last two minutes)."""
REASON_CHARS = 160
"""Reasons hold command output; a history of them must not hold megabytes."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """One ring: ``slots`` buckets of ``seconds`` each."""

    seconds: int
    slots: int

    @property
    def span(self) -> int:
        """The time the ring covers, in seconds."""
        return self.seconds * self.slots


RESOLUTIONS: dict[HistoryWindow, Resolution] = {
    "hour": Resolution(seconds=10, slots=360),
    "day": Resolution(seconds=300, slots=288),
}


class _Ring:
    """Fixed-size buckets of one resolution: count, failures, sum and max of a value."""

    __slots__ = ("_count", "_epochs", "_failures", "_peak", "_total", "resolution")

    def __init__(self, resolution: Resolution) -> None:
        self.resolution = resolution
        slots = resolution.slots
        # Flat typed arrays, allocated once: a bucket costs 40 bytes, never more.
        self._epochs = array("q", [-1]) * slots
        self._count = array("q", [0]) * slots
        self._failures = array("q", [0]) * slots
        self._total = array("d", [0.0]) * slots
        self._peak = array("d", [0.0]) * slots

    def add(self, at: float, *, count: int, failures: int = 0, value: float | None = None) -> None:
        epoch = math.floor(at / self.resolution.seconds)
        slot = epoch % self.resolution.slots
        held = self._epochs[slot]
        if held > epoch:
            return  # older than the bucket this slot holds now: the clock stepped back
        if held < epoch:
            self._epochs[slot] = epoch
            self._count[slot] = self._failures[slot] = 0
            self._total[slot] = self._peak[slot] = 0.0
        self._count[slot] += count
        self._failures[slot] += failures
        if value is not None:
            self._total[slot] += value
            self._peak[slot] = max(self._peak[slot], value)

    def dense(self, until: float) -> _Dense:
        """Every bucket of the window ending at ``until``, oldest first (empty ones 0)."""
        slots = self.resolution.slots
        first = _first_epoch(self.resolution, until)
        cut = first % slots

        def rotated(values: array[Any]) -> list[Any]:
            # Slot order to time order: the window's first bucket sits at slot ``cut``.
            return (values[cut:] + values[:cut]).tolist()

        epochs = self._epochs[cut:] + self._epochs[:cut]
        count, failures = rotated(self._count), rotated(self._failures)
        total, peak = rotated(self._total), rotated(self._peak)
        if epochs != array("q", range(first, first + slots)):
            # Slots not written in this window hold older buckets: they are empty now.
            for index, epoch in enumerate(epochs):
                if epoch != first + index:
                    count[index] = failures[index] = 0
                    total[index] = peak[index] = 0.0
        return count, failures, total, peak


class _Series:
    """One measured series at both resolutions."""

    __slots__ = ("rings",)

    def __init__(self) -> None:
        self.rings = {window: _Ring(resolution) for window, resolution in RESOLUTIONS.items()}

    def add(self, at: float, *, count: int, failures: int = 0, value: float | None = None) -> None:
        for ring in self.rings.values():
            ring.add(at, count=count, failures=failures, value=value)


_STATES: tuple[str, ...] = (
    "",  # no state yet
    "announced",
    "withdrawn",
    "draining",
    "drained",
    "dampened",
    "up",
    "down",
)
"""State codes of ``_StateRing`` (a byte each); any other state is stored as its name's
index in an overflow table, which the states of the code bound to a handful."""


class _StateRing:
    """Per bucket of one resolution: how many changes, the state before the first and
    after the last. Enough to draw a timeline where the exact changes were dropped."""

    __slots__ = ("_after", "_before", "_codes", "_count", "_epochs", "_names", "resolution")

    def __init__(self, resolution: Resolution, names: list[str], codes: dict[str, int]) -> None:
        self.resolution = resolution
        slots = resolution.slots
        self._names, self._codes = names, codes  # shared by both rings of a subject
        self._epochs = array("q", [-1]) * slots
        self._count = array("q", [0]) * slots
        self._before = array("B", [0]) * slots
        self._after = array("B", [0]) * slots

    def _code(self, state: str | None) -> int:
        if not state:
            return 0
        code = self._codes.get(state)
        if code is None:
            if len(self._names) > 255:  # a byte per state; never reached by our states
                return 0
            code = self._codes[state] = len(self._names)
            self._names.append(state)
        return code

    def add(self, at: float, before: str | None, after: str) -> None:
        epoch = math.floor(at / self.resolution.seconds)
        slot = epoch % self.resolution.slots
        held = self._epochs[slot]
        if held > epoch:
            return  # the clock stepped back (see _Ring.add)
        if held < epoch:
            self._epochs[slot] = epoch
            self._count[slot] = 0
            self._before[slot] = self._code(before)
        self._count[slot] += 1
        self._after[slot] = self._code(after)

    def sparse(self, until: float) -> ChangeBuckets:
        """The buckets of the window ending at ``until`` that hold changes."""
        first = _first_epoch(self.resolution, until)
        last = first + self.resolution.slots - 1
        epochs = self._epochs
        found = sorted(
            (epochs[slot] - first, count, self._before[slot], self._after[slot])
            for slot, count in enumerate(self._count)
            if count and first <= epochs[slot] <= last
        )
        names = self._names
        return ChangeBuckets.model_construct(
            index=tuple(item[0] for item in found),
            count=tuple(item[1] for item in found),
            state_before=tuple(names[item[2]] or None for item in found),
            state_after=tuple(names[item[3]] for item in found),
        )


class _Change(NamedTuple):
    at: float
    state: str
    reason: str


class _Subject:
    """A prefix, service or peer: its latest changes and how many there were."""

    __slots__ = ("changes", "dropped_until", "per_bucket", "state")

    def __init__(self) -> None:
        self.changes: deque[_Change] = deque(maxlen=CHANGES_KEPT)
        self.dropped_until: float | None = None
        names = list(_STATES)
        codes = {name: code for code, name in enumerate(names)}
        self.per_bucket = {
            window: _StateRing(resolution, names, codes)
            for window, resolution in RESOLUTIONS.items()
        }
        self.state: str | None = None

    def change(self, at: float, state: str, reason: str) -> None:
        if state == self.state:
            return
        before, self.state = self.state, state
        if len(self.changes) == CHANGES_KEPT:
            self.dropped_until = self.changes[0].at
        self.changes.append(_Change(at, state, _shorten(reason)))
        for ring in self.per_bucket.values():
            ring.add(at, before, state)

    def timeline(
        self, kind: ChangeKind, name: str, window: HistoryWindow, since: float, until: float
    ) -> StateTimeline:
        return StateTimeline(**self._timeline_fields(kind, name, window, since, until))

    def _timeline_fields(
        self, kind: ChangeKind, name: str, window: HistoryWindow, since: float, until: float
    ) -> dict[str, Any]:
        kept = list(self.changes)
        # The change in force at the window's start, then those within it.
        first = 0
        for index, change in enumerate(kept):
            if change.at <= since:
                first = index
        changes = tuple(
            HistoryChange.model_construct(
                at=c.at, kind=kind, name=name, state=c.state, reason=c.reason
            )
            for c in kept[first:]
        )
        complete_since = kept[0].at if self.dropped_until is not None and kept else None
        return {
            "name": name,
            "changes": changes,
            "complete_since": complete_since,
            "change_buckets": self.per_bucket[window].sparse(until),
        }


class _Service(_Subject):
    __slots__ = ("probes",)

    def __init__(self) -> None:
        super().__init__()
        self.probes = _Series()

    def history(
        self, name: str, window: HistoryWindow, since: float, until: float
    ) -> ServiceHistory:
        return ServiceHistory(
            **self._timeline_fields("service", name, window, since, until),
            probes=_probes(self.probes, window, until),
        )


class History:
    """The bounded in-memory history; one owner (the supervisor) feeds and reads it."""

    def __init__(self, started_at: float) -> None:
        self._started_at = started_at
        self._prefixes: dict[str, _Subject] = {}
        self._services: dict[str, _Service] = {}
        self._peers: dict[str, _Subject] = {}
        self._handed_over: _Series | None = None
        self._rescued: _Series | None = None
        self._last_counters: tuple[int, int] | None = None

    def observe(self, effect: fx.Effect, at: float) -> None:
        """Take one of the core's observations, made at wall-clock time ``at``."""
        match effect:
            case fx.PrefixChanged():
                _subject(self._prefixes, effect.prefix, _Subject).change(
                    at, effect.state, effect.reason
                )
            case fx.ServiceChanged():
                state = "up" if effect.up else "down"
                _subject(self._services, effect.service, _Service).change(at, state, effect.reason)
            case fx.PeerChanged():
                state = "up" if effect.up else "down"
                _subject(self._peers, effect.peer, _Subject).change(at, state, effect.reason)
            case fx.ProbeRecorded():
                self._probe(effect, at)
            case fx.Unconfigured():
                for name in effect.services:
                    self._services.pop(name, None)
                for name in effect.prefixes:
                    self._prefixes.pop(name, None)
                for name in effect.peers:
                    self._peers.pop(name, None)
            case _:
                pass

    def _probe(self, effect: fx.ProbeRecorded, at: float) -> None:
        result = effect.result
        latency = result.latency if result.ok and math.isfinite(result.latency) else None
        if latency is not None:
            latency = max(0.0, latency)
        service = _subject(self._services, effect.service, _Service)
        service.probes.add(at, count=1, failures=0 if result.ok else 1, value=latency)

    def rescue_counters(self, handed_over: int, rescued: int, at: float) -> None:
        """Rescue's cumulative packet counters as just read; a counter that went down was
        reset (the data path was re-created), so its new value is the increment."""
        if self._handed_over is None or self._rescued is None:
            self._handed_over, self._rescued = _Series(), _Series()
        previous = self._last_counters
        self._last_counters = (handed_over, rescued)
        if previous is None:
            return  # the first reading is the baseline: what came before is not "now"
        for series, now_value, before in (
            (self._handed_over, handed_over, previous[0]),
            (self._rescued, rescued, previous[1]),
        ):
            delta = now_value - before if now_value >= before else now_value
            if delta:
                series.add(at, count=delta)

    def rescue_forgotten(self) -> None:
        """Rescue is no longer configured: its counters start again if it comes back."""
        self._handed_over = self._rescued = None
        self._last_counters = None

    def snapshot(self, window: HistoryWindow, now: float) -> SidecarHistory:
        """The history of the last hour or day before ``now`` (Unix seconds)."""
        resolution = RESOLUTIONS[window]
        since = now - resolution.span
        rescue = None
        if self._handed_over is not None and self._rescued is not None:
            rescue = RescueHistory(
                handed_over=_counts(self._handed_over, window, now),
                rescued=_counts(self._rescued, window, now),
            )
        return SidecarHistory(
            window=window,
            since=since,
            until=now,
            bucket_seconds=resolution.seconds,
            first_bucket_start=float(_first_epoch(resolution, now) * resolution.seconds),
            bucket_count=resolution.slots,
            recorded_since=self._started_at,
            prefixes=tuple(
                subject.timeline("prefix", name, window, since, now)
                for name, subject in self._prefixes.items()
            ),
            services=tuple(
                subject.history(name, window, since, now)
                for name, subject in self._services.items()
            ),
            peers=tuple(
                subject.timeline("peer", name, window, since, now)
                for name, subject in self._peers.items()
            ),
            rescue=rescue,
        )


_S = TypeVar("_S", bound=_Subject)


def _subject(table: dict[str, _S], name: str, make: type[_S]) -> _S:
    subject = table.get(name)
    if subject is None:
        subject = table[name] = make()
    return subject


def _shorten(reason: str) -> str:
    if len(reason) <= REASON_CHARS:
        return reason
    return reason[: REASON_CHARS - 1] + "\u2026"


def _first_epoch(resolution: Resolution, until: float) -> int:
    """The number of the window's first bucket (buckets are counted from the epoch)."""
    return math.floor(until / resolution.seconds) - resolution.slots + 1


def _counts(series: _Series, window: HistoryWindow, until: float) -> tuple[int, ...]:
    return tuple(series.rings[window].dense(until)[0])


def _probes(series: _Series, window: HistoryWindow, until: float) -> ProbeSeries:
    count, failures, total, peak = series.rings[window].dense(until)
    succeeded = [probes - failed for probes, failed in zip(count, failures, strict=True)]
    return ProbeSeries.model_construct(
        probes=tuple(count),
        failures=tuple(failures),
        latency_mean=tuple(t / ok if ok else None for t, ok in zip(total, succeeded, strict=True)),
        latency_max=tuple(p if ok else None for p, ok in zip(peak, succeeded, strict=True)),
    )
