"""``anycast-announcer status --history``: the recent past as a terminal shows it.

The last changes as a table, then one line per prefix, session and service drawn in
characters over the window: a state letter per column for timelines, a block-character
sparkline of latency with ``!`` where probes failed, and the same for rescue's packets.
Everything from the sidecar is user data and passes through ``client.clean``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from anycast_announcer.historymodels import (
    ChangeBucket,
    CountBucket,
    ProbeBucket,
    SidecarHistory,
    StateTimeline,
)
from anycast_announcer.http.client import clean, table

__all__ = ["COLUMNS", "format_history"]

COLUMNS = 60
"""Characters across the window: a minute each for the hour, 24 min for the day."""
LATEST = 30
"""Changes listed."""

_LEVELS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
_LETTERS = {
    "announced": "A",
    "withdrawn": "w",
    "draining": "g",
    "drained": "d",
    "dampened": "D",
    "up": "U",
    "down": "x",
    "unknown": "?",
}
LEGEND = (
    "A announced, w withdrawn, g draining (graceful shutdown), d drained, D dampened, "
    "U up, x down, ~ several changes, . no record; latency: ! failed probes"
)


def _clock(at: float, *, day: bool = False) -> str:
    try:
        return datetime.fromtimestamp(at, tz=UTC).strftime("%m-%d %H:%M" if day else "%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return "?"


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


class _Columns:
    """The window cut into COLUMNS equal slices."""

    def __init__(self, history: SidecarHistory) -> None:
        self.history = history
        self.since = history.since
        self.width = max(history.until - history.since, 1e-9) / COLUMNS

    def of(self, at: float) -> int | None:
        index = math.floor((at - self.since) / self.width)
        return index if 0 <= index < COLUMNS else None

    def end(self, column: int) -> float:
        return self.since + (column + 1) * self.width


def _strip(timeline: StateTimeline, columns: _Columns) -> str:
    """A letter per column: the state at its end; ``~`` where it changed more than once."""
    changes = timeline.changes
    per_column = [0] * COLUMNS
    buckets = columns.history.change_buckets(timeline)
    for bucket in buckets:
        column = columns.of(bucket.start)
        if column is not None:
            per_column[column] += bucket.changes
    cells = []
    index = -1
    for column in range(COLUMNS):
        end = columns.end(column)
        while index + 1 < len(changes) and changes[index + 1].at < end:
            index += 1
        state = changes[index].state if index >= 0 else None
        if state is None and timeline.complete_since is not None:
            state = _bucket_state(buckets, end)  # its changes were dropped: the buckets say
        if per_column[column] > 1:
            cells.append("~")
        elif state is not None:
            cells.append(_LETTERS.get(state, "?"))
        else:
            cells.append(".")
    return "".join(cells)


def _bucket_state(buckets: Sequence[ChangeBucket], at: float) -> str | None:
    """The state at ``at`` from the change buckets: the last one's end before it, or the
    next one's start."""
    state: str | None = None
    for bucket in buckets:
        if bucket.start >= at:
            return state or bucket.state_before
        state = bucket.state_after
    return state


def _latency(probes: Sequence[ProbeBucket], columns: _Columns) -> tuple[str, int, int]:
    """The sparkline, and the probes and failures it covers."""
    means: list[list[float]] = [[] for _ in range(COLUMNS)]
    failed = [0] * COLUMNS
    total = failures = 0
    for bucket in probes:
        column = columns.of(bucket.start)
        if column is None:
            continue
        total += bucket.probes
        failures += bucket.failures
        failed[column] += bucket.failures
        if bucket.latency_mean is not None:
            means[column].append(bucket.latency_mean)
    values = [sum(m) / len(m) if m else None for m in means]
    return _spark(values, failed), total, failures


def _spark(values: Sequence[float | None], marks: Sequence[int] = ()) -> str:
    top = max((v for v in values if v is not None), default=0.0)
    cells = []
    for column, value in enumerate(values):
        if marks and marks[column]:
            cells.append("!")
        elif value is None:
            cells.append(" ")
        else:
            level = round(value / top * (len(_LEVELS) - 1)) if top > 0 else 0
            cells.append(_LEVELS[level])
    return "".join(cells)


def _packets(buckets: Sequence[CountBucket], columns: _Columns) -> tuple[str, int]:
    sums = [0.0] * COLUMNS
    for bucket in buckets:
        column = columns.of(bucket.start)
        if column is not None:
            sums[column] += bucket.amount
    values: list[float | None] = [value if value else None for value in sums]
    return _spark(values), int(sum(sums))


def format_history(history: SidecarHistory) -> str:
    """The tables ``anycast-announcer status --history`` prints."""
    now = history.until
    day = history.window == "day"
    span = f"last {history.window}, {_clock(history.since, day=day)} to {_clock(now, day=day)} UTC"
    latest = history.latest_changes(LATEST)
    lines = [f"CHANGES ({span}; newest last)"]
    if latest:
        lines += table(
            ["TIME", "AGO", "KIND", "NAME", "STATE", "REASON"],
            [
                [
                    _clock(c.at),
                    _ago(now - c.at),
                    c.kind,
                    clean(c.name),
                    clean(c.state),
                    clean(c.reason),
                ]
                for c in latest
            ],
        )
    else:
        lines.append("no change in the window")
    columns = _Columns(history)
    timelines = [("prefix", t) for t in history.prefixes] + [("peer", t) for t in history.peers]
    lines += ["", f"TIMELINES ({span}; one column = {columns.width / 60:g} min)"]
    lines += table(
        ["KIND", "NAME", "STATE OVER THE WINDOW", "CHANGES"],
        [
            [
                kind,
                clean(t.name),
                _strip(t, columns),
                str(sum(t.change_buckets.count)),
            ]
            for kind, t in timelines
        ],
    )
    rows = []
    for service in history.services:
        spark, probes, failures = _latency(history.probe_buckets(service), columns)
        rows.append([clean(service.name), _strip(service, columns), spark, f"{failures}/{probes}"])
    lines += [""]
    lines += table(["SERVICE", "STATE", "LATENCY (relative)", "FAILED"], rows)
    if history.rescue is not None:
        handed, handed_total = _packets(history.count_buckets(history.rescue.handed_over), columns)
        rescued, rescued_total = _packets(history.count_buckets(history.rescue.rescued), columns)
        lines += [""]
        lines += table(
            ["RESCUE", "PACKETS OVER THE WINDOW (relative)", "TOTAL"],
            [
                ["handed over", handed, str(handed_total)],
                ["rescued", rescued, str(rescued_total)],
            ],
        )
    lines += ["", LEGEND]
    return "\n".join(lines)
