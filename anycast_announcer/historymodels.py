"""What ``GET /history`` answers: the recent past, as the page, the CLI and scripts read it.

The same models serialize the answer, generate its OpenAPI schema and parse it back in
the CLI (as ``anycast_announcer.status`` does for the present). The recorder that fills
them is ``anycast_announcer.history``; this module only describes the shape.

A window is the last hour (10 s buckets) or the last day (5 min buckets). Series are
columns (a list per field, one entry per bucket) rather than an object per bucket: a
day of fifty services is then a few hundred lists, cheap to build, send and draw, and
``SidecarHistory`` turns them back into bucket tuples for code that reads them. State changes
are exact, with their reasons, as far as the recorder kept them: it keeps the latest
ones of each subject, and ``complete_since`` says from when the list is whole. The
buckets (changes with the states around them, probes, failures, rescued packets) cover
the whole window whatever was dropped.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, computed_field

from anycast_announcer.timefmt import iso_time

__all__ = [
    "WINDOWS",
    "ChangeBucket",
    "ChangeBuckets",
    "ChangeKind",
    "CountBucket",
    "HistoryChange",
    "HistoryWindow",
    "ProbeBucket",
    "ProbeSeries",
    "RescueHistory",
    "ServiceHistory",
    "SidecarHistory",
    "StateTimeline",
]

HistoryWindow = Literal["hour", "day"]
WINDOWS: tuple[HistoryWindow, ...] = ("hour", "day")
ChangeKind = Literal["prefix", "service", "peer"]


class _History(BaseModel):
    # Frozen like every snapshot; unknown keys from a newer sidecar are ignored by the CLI.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="null")


class HistoryChange(_History):
    """One state change of a prefix, a service or a BGP session."""

    at: float = Field(description="Unix seconds")
    kind: ChangeKind
    name: str = Field(description="the prefix, service or peer address")
    state: str = Field(description="the state it entered")
    reason: str

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def at_iso(self) -> str | None:
        return iso_time(self.at)


class CountBucket(NamedTuple):
    """A view of one bucket of a count series (``SidecarHistory.count_buckets``)."""

    start: float
    amount: int


class ChangeBucket(NamedTuple):
    """A view of one bucket with state changes (``SidecarHistory.change_buckets``)."""

    start: float
    changes: int
    state_before: str | None
    state_after: str


class ProbeBucket(NamedTuple):
    """A view of one bucket of a service's probes (``SidecarHistory.probe_buckets``)."""

    start: float
    probes: int
    failures: int
    latency_mean: float | None
    latency_max: float | None


class ChangeBuckets(_History):
    """The buckets of the window that hold state changes, as parallel lists.

    With the states before the first and after the last change of each bucket, the
    timeline is known over the whole window even where the exact changes were dropped:
    between two such buckets it held the state the earlier one ended in."""

    index: tuple[int, ...] = Field(description="bucket numbers, 0 the window's first")
    count: tuple[int, ...]
    state_before: tuple[str | None, ...] = Field(
        description="before the bucket's first change; null: no record"
    )
    state_after: tuple[str, ...] = Field(description="after the bucket's last change")


class ProbeSeries(_History):
    """A service's probes: one entry per bucket of the window, oldest first."""

    probes: tuple[int, ...]
    failures: tuple[int, ...]
    latency_mean: tuple[float | None, ...] = Field(
        description="seconds, successful probes only; null without one"
    )
    latency_max: tuple[float | None, ...] = Field(
        description="seconds, successful probes only; null without one"
    )


class StateTimeline(_History):
    """A subject's state changes over the window, oldest first."""

    name: str
    changes: tuple[HistoryChange, ...] = Field(
        description="oldest first; the first one may be older than the window: it is the "
        "state in force when the window starts"
    )
    complete_since: float | None = Field(
        description="Unix seconds: older changes were dropped to bound memory (the "
        "change counts still cover them); null when none was"
    )
    change_buckets: ChangeBuckets = Field(
        description="state changes per bucket, dropped ones included"
    )


class ServiceHistory(StateTimeline):
    """A service's state changes and its probes, downsampled."""

    probes: ProbeSeries


class RescueHistory(_History):
    """Flow rescue's packet counters, as increments per bucket."""

    handed_over: tuple[int, ...] = Field(
        description="per bucket: packets of other servers' flows handed to them"
    )
    rescued: tuple[int, ...] = Field(
        description="per bucket: packets of our flows other servers handed to us"
    )


class SidecarHistory(_History):
    """The recent past of the sidecar, kept in memory (lost at restart)."""

    window: HistoryWindow
    since: float = Field(description="Unix seconds: the window's start")
    until: float = Field(description="Unix seconds: now")
    bucket_seconds: float
    first_bucket_start: float = Field(
        description="Unix seconds: bucket i starts at first_bucket_start + i * bucket_seconds"
    )
    bucket_count: int = Field(description="buckets in the window; every series has this many")
    recorded_since: float = Field(description="Unix seconds: when this sidecar started")
    prefixes: tuple[StateTimeline, ...]
    services: tuple[ServiceHistory, ...]
    peers: tuple[StateTimeline, ...]
    rescue: RescueHistory | None = Field(description="null until rescue's counters were read")

    def bucket_start(self, index: int) -> float:
        """Unix seconds at which bucket ``index`` starts."""
        return self.first_bucket_start + index * self.bucket_seconds

    def change_buckets(self, timeline: StateTimeline) -> list[ChangeBucket]:
        """The buckets with changes of ``timeline``, oldest first."""
        buckets = timeline.change_buckets
        return [
            ChangeBucket(self.bucket_start(index), count, before, after)
            for index, count, before, after in zip(
                buckets.index, buckets.count, buckets.state_before, buckets.state_after, strict=True
            )
        ]

    def probe_buckets(self, service: ServiceHistory) -> list[ProbeBucket]:
        """The buckets in which ``service`` was probed, oldest first."""
        series = service.probes
        return [
            ProbeBucket(self.bucket_start(index), probes, failures, mean, peak)
            for index, (probes, failures, mean, peak) in enumerate(
                zip(
                    series.probes,
                    series.failures,
                    series.latency_mean,
                    series.latency_max,
                    strict=True,
                )
            )
            if probes
        ]

    def count_buckets(self, counts: tuple[int, ...]) -> list[CountBucket]:
        """The non-empty buckets of a count series, oldest first."""
        return [
            CountBucket(self.bucket_start(index), count)
            for index, count in enumerate(counts)
            if count
        ]

    def latest_changes(self, limit: int) -> list[HistoryChange]:
        """The newest ``limit`` changes within the window, of every kind, oldest first."""
        every = [
            change
            for timeline in (*self.prefixes, *self.services, *self.peers)
            for change in timeline.changes
            if change.at >= self.since
        ]
        every.sort(key=lambda change: change.at)
        return every[-limit:] if limit > 0 else []

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def since_iso(self) -> str | None:
        return iso_time(self.since)

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def until_iso(self) -> str | None:
        return iso_time(self.until)
