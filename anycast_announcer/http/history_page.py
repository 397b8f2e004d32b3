"""The status page's history section: timelines and sparklines, as inline SVG.

Drawn on the server, so the page keeps its Content-Security-Policy (no script, no image
source: inline ``<svg>`` is markup, not a fetched resource). Each prefix and BGP session
gets a band of coloured states over the window, each service a latency line with its
failures marked in red and a thin band of its up/down state, and rescue a bar per bucket
of handed-over packets. Every band, mark and bar carries an SVG ``<title>`` (the
browser's tooltip) with the times and the reason, and ``data-*`` attributes that tests
and scripts can read.

The x axis is the window (0..1000 user units, stretched to the cell's width), so an hour
and a day draw the same way. Where a subject's older changes were dropped to bound
memory, the band shows those buckets in orange with the number of changes each one held,
and the state between them from the states each bucket began and ended with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from anycast_announcer.historymodels import (
    ChangeBucket,
    CountBucket,
    HistoryChange,
    ProbeBucket,
    ProbeSeries,
    ServiceHistory,
    SidecarHistory,
    StateTimeline,
)
from anycast_announcer.http.html import STATE_CLASSES, text
from anycast_announcer.status import SidecarStatus
from anycast_announcer.timefmt import iso_time

__all__ = ["HISTORY_STYLE", "render_history"]

WIDTH = 1000
"""User units across the window; the SVG stretches them to the cell's width."""
BAND_HEIGHT = 16
MIN_BAND = 1.0
"""User units (a thousandth of the window): narrower bands side by side merge."""
SPARK_HEIGHT = 28

HISTORY_STYLE = """
table.history { width: 100%; table-layout: fixed; margin-bottom: .75rem; }
.history th.name { width: 13rem; }
.history th.note { width: 20rem; }
.history td.chart { padding: .15rem .4rem; }
.history svg { display: block; width: 100%; }
.history td.name { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.history td.note { color: #5b6672; font-size: .85rem; }
.history .axis { display: flex; justify-content: space-between; color: #5b6672;
                 font-size: .8rem; }
.windows a, .windows b { margin-right: .6rem; }
rect.announced, rect.up { fill: #1a7f37; }
rect.withdrawn, rect.down { fill: #c62828; }
rect.draining, rect.dampened { fill: #c77700; }
rect.drained { fill: #8250df; }
rect.unknown, rect.other { fill: #9aa3ad; }
rect.unrecorded { fill: #e4e8ec; }
rect.dropped { fill: #f0b37e; stroke: #c77700; stroke-width: .5;
               vector-effect: non-scaling-stroke; }
rect.failure { fill: #c62828; }
path.packets { fill: #0969da; }
polyline.latency { fill: none; stroke: #0969da; stroke-width: 1.5;
                   vector-effect: non-scaling-stroke; }
"""


def _clock(at: float, window_seconds: float) -> str:
    try:
        moment = datetime.fromtimestamp(at, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return "?"
    return moment.strftime("%H:%M:%S" if window_seconds <= 7200 else "%m-%d %H:%M")


class _Axis:
    """Times of the window to x positions."""

    def __init__(self, history: SidecarHistory) -> None:
        self.since = history.since
        self.until = history.until
        self.span = max(history.until - history.since, 1e-9)
        self.bucket = history.bucket_seconds
        self.history = history

    def x(self, at: float) -> float:
        return min(max((at - self.since) / self.span, 0.0), 1.0) * WIDTH

    def clock(self, at: float) -> str:
        return _clock(at, self.span)


def _rect(css: str, x0: float, x1: float, y: float, height: float, title: str, **data: str) -> str:
    attrs = "".join(f' data-{name}="{text(value)}"' for name, value in data.items())
    return (
        f'<rect class="{css}" x="{x0:.2f}" y="{y:g}" width="{max(x1 - x0, 0.4):.2f}" '
        f'height="{height:g}"{attrs}><title>{text(title)}</title></rect>'
    )


def _svg(height: int, body: Iterable[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" height="{height}" preserveAspectRatio="none" '
        f'role="img" aria-label="{text(label)}">' + "".join(body) + "</svg>"
    )


def _bands(
    timeline: StateTimeline, axis: _Axis, *, height: float, recorded_since: float
) -> list[str]:
    """The state bands of one subject: what is known, what was dropped, what predates us."""
    shapes: list[str] = []
    changes = timeline.changes
    known_from = changes[0].at if changes else axis.until
    if known_from > axis.since:
        shapes += _before_known(timeline, axis, known_from, height, recorded_since)
    # Bands too narrow to see or hover, side by side, become one orange "busy" mark: a
    # prefix flapping every second would otherwise be a hundred slivers.
    narrow: list[tuple[HistoryChange, float]] = []
    for index, change in enumerate(changes):
        end = changes[index + 1].at if index + 1 < len(changes) else axis.until
        if end <= axis.since:
            continue
        if axis.x(end) - axis.x(max(change.at, axis.since)) < MIN_BAND:
            narrow.append((change, end))
            continue
        shapes += _narrow(narrow, axis, height)
        narrow = []
        shapes.append(_band(change, end, axis, height))
    shapes += _narrow(narrow, axis, height)
    return shapes


def _narrow(run: Sequence[tuple[HistoryChange, float]], axis: _Axis, height: float) -> list[str]:
    if len(run) < 2:
        return [_band(change, end, axis, height) for change, end in run]
    first, (last, end) = run[0][0], run[-1]
    title = (
        f"{len(run)} changes {axis.clock(first.at)} \u2013 {axis.clock(end)}; "
        f"the last: {last.state}, {last.reason}"
    )
    start = max(first.at, axis.since)
    return [
        _rect("band dropped", axis.x(start), axis.x(end), 0, height, title, changes=str(len(run)))
    ]


def _band(change: HistoryChange, end: float, axis: _Axis, height: float) -> str:
    css = change.state if change.state in STATE_CLASSES else "other"
    start = max(change.at, axis.since)
    title = f"{change.state} {axis.clock(change.at)} \u2013 {axis.clock(end)}: {change.reason}"
    return _rect(
        f"band {css}",
        axis.x(start),
        axis.x(end),
        0,
        height,
        title,
        state=change.state,
        since=f"{change.at:.3f}",
        until=f"{end:.3f}",
    )


def _before_known(
    timeline: StateTimeline, axis: _Axis, known_from: float, height: float, recorded: float
) -> list[str]:
    """Before the first change kept: no record, or where older changes were dropped, the
    states the buckets give (hatched where they changed, solid where quiet)."""
    if timeline.complete_since is None:
        return [_quiet(None, axis.since, known_from, axis, height, recorded)]
    buckets = axis.history.change_buckets(timeline)
    earlier = [bucket for bucket in buckets if bucket.start < known_from]
    state = earlier[0].state_before if earlier else None
    position = axis.since
    shapes = []
    for run in _adjacent(earlier, axis.bucket):
        first, last = run[0], run[-1]
        if first.start > position:
            shapes.append(_quiet(state, position, first.start, axis, height, recorded))
        end = min(last.start + axis.bucket, known_from)
        changes = sum(bucket.changes for bucket in run)
        title = (
            f"{changes} changes {axis.clock(first.start)} \u2013 {axis.clock(end)}, "
            f"{first.state_before or 'no record'} \u2192 {last.state_after} (details not "
            "kept: memory bound)"
        )
        start = max(first.start, axis.since)
        shapes.append(
            _rect(
                "band dropped", axis.x(start), axis.x(end), 0, height, title, changes=str(changes)
            )
        )
        state, position = last.state_after, end
    if known_from > position:
        shapes.append(_quiet(state, position, known_from, axis, height, recorded))
    return shapes


def _adjacent(buckets: Sequence[ChangeBucket], width: float) -> list[list[ChangeBucket]]:
    """Runs of buckets that follow one another (one mark each, however long the run)."""
    runs: list[list[ChangeBucket]] = []
    for bucket in buckets:
        if runs and bucket.start - runs[-1][-1].start <= width * 1.5:
            runs[-1].append(bucket)
        else:
            runs.append([bucket])
    return runs


def _quiet(
    state: str | None, start: float, end: float, axis: _Axis, height: float, recorded: float
) -> str:
    """A span without a kept change: the state the buckets say, or no record."""
    if state is None:
        title = f"not recorded before {axis.clock(end)}"
        if recorded > axis.since:
            title += f" (this sidecar started at {axis.clock(recorded)})"
        return _rect("band unrecorded", axis.x(start), axis.x(end), 0, height, title)
    css = state if state in STATE_CLASSES else "other"
    title = f"{state} {axis.clock(start)} \u2013 {axis.clock(end)} (reason not kept)"
    return _rect(f"band {css}", axis.x(start), axis.x(end), 0, height, title, state=state)


def _changes_note(timeline: StateTimeline, axis: _Axis) -> str:
    count = sum(timeline.change_buckets.count)
    current = timeline.changes[-1].state if timeline.changes else "no record"
    return f"{text(current)}, {count} change{'s' if count != 1 else ''}"


def _timeline_rows(
    timelines: Sequence[StateTimeline],
    names: Sequence[str],
    axis: _Axis,
    kind: str,
    recorded: float,
) -> list[str]:
    by_name = {timeline.name: timeline for timeline in timelines}
    rows = []
    for name in [*names, *(t.name for t in timelines if t.name not in names)]:
        timeline = by_name.get(name)
        if timeline is None:
            chart, note = "", "no record yet"
        else:
            label = f"{kind} {name} over the window"
            chart = _svg(
                BAND_HEIGHT,
                _bands(timeline, axis, height=BAND_HEIGHT, recorded_since=recorded),
                label,
            )
            note = _changes_note(timeline, axis)
        rows.append(
            f'<tr data-{kind}-history="{text(name)}"><td class="name">{text(name)}</td>'
            f'<td class="chart">{chart}</td><td class="note">{note}</td></tr>'
        )
    return rows


def _latency_line(series: ProbeSeries, axis: _Axis, top: float) -> str:
    """The mean latency per bucket; broken where a bucket has none (all probes failed,
    or none ran), so a gap is not drawn as a slope. Works on the columns directly: fifty
    services are 18,000 points an hour, drawn at every refresh."""
    scale = (SPARK_HEIGHT - 8) / (top if top > 0 else 1.0)  # the top rows are for failures
    base = SPARK_HEIGHT - 1
    step = axis.bucket * WIDTH / axis.span
    left = (axis.history.first_bucket_start + axis.bucket / 2 - axis.since) * WIDTH / axis.span
    segments: list[list[str]] = []
    current: list[str] | None = None
    for index, mean in enumerate(series.latency_mean):
        if mean is None or not math.isfinite(mean):
            current = None
            continue
        x = left + index * step
        if x < 0 or x > WIDTH:
            continue
        if current is None:
            current = []
            segments.append(current)
        # Whole units: a bucket is 2.8 of them wide (3.5 for the day), and str(int) is
        # several times cheaper than formatting a float.
        current.append(f"{int(x)},{int(base - mean * scale)}")
    lines = []
    for points in segments:
        if len(points) == 1:  # one point draws nothing; make it a short flat line
            x_text, y_text = points[0].split(",")
            points = [f"{int(x_text) - 1},{y_text}", f"{int(x_text) + 1},{y_text}"]
        lines.append(f'<polyline class="latency" points="{" ".join(points)}"></polyline>')
    return "".join(lines)


def _failure_marks(probes: Sequence[ProbeBucket], axis: _Axis) -> list[str]:
    """A red mark over each run of buckets with failed probes (one element per run)."""
    runs: list[list[ProbeBucket]] = []
    for bucket in probes:
        if not bucket.failures:
            continue
        if runs and bucket.start - runs[-1][-1].start <= axis.bucket * 1.5:
            runs[-1].append(bucket)
        else:
            runs.append([bucket])
    marks = []
    for run in runs:
        start, end = run[0].start, run[-1].start + axis.bucket
        failures = sum(b.failures for b in run)
        title = (
            f"{failures} of {sum(b.probes for b in run)} probes failed "
            f"{axis.clock(start)} \u2013 {axis.clock(end)}"
        )
        marks.append(
            _rect("failure", axis.x(start), axis.x(end), 0, 6, title, failures=str(failures))
        )
    return marks


def _milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"


def _service_rows(
    services: Sequence[ServiceHistory], names: Sequence[str], axis: _Axis, recorded: float
) -> list[str]:
    by_name = {service.name: service for service in services}
    rows = []
    for name in [*names, *(s.name for s in services if s.name not in names)]:
        service = by_name.get(name)
        if service is None or not (any(service.probes.probes) or service.changes):
            rows.append(
                f'<tr data-service-history="{text(name)}"><td class="name">{text(name)}</td>'
                '<td class="chart"></td><td class="note">no probe yet</td></tr>'
            )
            continue
        series = service.probes
        top = max((m for m in series.latency_mean if m is not None), default=0.0)
        peak = max((m for m in series.latency_max if m is not None), default=None)
        failures = sum(series.failures)
        # Only the buckets with failures become tuples: they are few.
        failed = [
            ProbeBucket(axis.history.bucket_start(index), probes, failed, None, None)
            for index, (probes, failed) in enumerate(
                zip(series.probes, series.failures, strict=True)
            )
            if failed
        ]
        state = _bands(service, axis, height=3, recorded_since=recorded)
        chart = _svg(
            SPARK_HEIGHT + 4,
            [
                *_failure_marks(failed, axis),
                _latency_line(service.probes, axis, top),
                f'<g transform="translate(0 {SPARK_HEIGHT + 1})">{"".join(state)}</g>',
            ],
            f"latency of {name} over the window",
        )
        note = (
            f"mean up to {_milliseconds(top)}, peak {_milliseconds(peak)}"
            if peak is not None
            else "no successful probe"
        )
        note += f"; {failures} failed of {sum(series.probes)}"
        rows.append(
            f'<tr data-service-history="{text(name)}"><td class="name">{text(name)}</td>'
            f'<td class="chart">{chart}</td><td class="note">{text(note)}</td></tr>'
        )
    return rows


def _packet_row(name: str, buckets: Sequence[CountBucket], axis: _Axis) -> str:
    """Packets per bucket as bars, drawn as one path (a day is 288 of them)."""
    top = max((b.amount for b in buckets), default=0)
    total = sum(b.amount for b in buckets)
    bars = "".join(
        f"M{axis.x(b.start):.1f},{SPARK_HEIGHT}V{SPARK_HEIGHT * (1 - b.amount / top):.1f}"
        f"H{axis.x(b.start + axis.bucket):.1f}V{SPARK_HEIGHT}Z"
        for b in buckets
        if top
    )
    path = (
        f'<path class="packets" d="{bars}" data-packets="{total}"><title>{total} packets, '
        f"up to {top} per {axis.bucket:g} s</title></path>"
        if bars
        else ""
    )
    return (
        f'<tr data-rescue-history="{text(name)}"><td class="name">{text(name)}</td>'
        f'<td class="chart">{_svg(SPARK_HEIGHT, [path], name)}</td>'
        f'<td class="note">{total} packets, up to {top} per {axis.bucket:g} s</td></tr>'
    )


def _table(table_id: str, heading: str, rows: Sequence[str], axis: _Axis) -> str:
    if not rows:
        return ""
    return (
        f'<table class="history" id="{table_id}">'
        f'<tr><th class="name">{text(heading)}</th><th><div class="axis">'
        f"<span>{axis.clock(axis.since)}</span><span>{axis.clock(axis.until)} UTC</span></div>"
        f'</th><th class="note">in the window</th></tr>' + "\n".join(rows) + "</table>"
    )


def render_history(history: SidecarHistory, status: SidecarStatus) -> str:
    """The history section; rows follow the status's order (the configuration's)."""
    axis = _Axis(history)
    recorded = history.recorded_since
    windows = " ".join(
        f"<b>last {window}</b>"
        if window == history.window
        else f'<a href="/?window={window}">last {window}</a>'
        for window in ("hour", "day")
    )
    prefixes = _timeline_rows(
        history.prefixes, [p.prefix for p in status.prefixes], axis, "prefix", recorded
    )
    services = _service_rows(history.services, [s.name for s in status.services], axis, recorded)
    peers = _timeline_rows(history.peers, [p.address for p in status.peers], axis, "peer", recorded)
    rescue = ""
    if history.rescue is not None:
        rescue = _table(
            "rescue-history",
            "flow rescue",
            [
                _packet_row("handed over", history.count_buckets(history.rescue.handed_over), axis),
                _packet_row("rescued", history.count_buckets(history.rescue.rescued), axis),
            ],
            axis,
        )
    return f"""<h2 id="history">What happened</h2>
<p class="windows meta">{windows} &middot; {history.bucket_seconds:g} s buckets &middot;
in memory since {text(iso_time(recorded) or "?")} &middot;
<a href="/history?window={history.window}">JSON</a></p>
{_table("prefix-timeline", "prefix", prefixes, axis)}
{_table("peer-timeline", "BGP peer", peers, axis)}
{_table("service-latency", "service: latency, failures in red", services, axis)}
{rescue}"""
