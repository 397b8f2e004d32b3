"""What ``GET /history`` answers: the recent past, as the page, the CLI and scripts read it.

The same models serialize the answer, generate its OpenAPI schema and parse it back in
the CLI (as ``anycast_announcer.status`` does for the present). The recorder that fills
them is ``anycast_announcer.history``; this module only describes the shape.

A window is the last hour (10 s buckets) or the last day (5 min buckets). State changes
are exact, with their reasons, as far as the recorder kept them: it keeps the latest
ones of each subject, and ``complete_since`` says from when the list is whole. The
buckets (changes with the states around them, probes, failures, rescued packets) cover
the whole window whatever was dropped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from anycast_announcer.timefmt import iso_time

__all__ = [
    "WINDOWS",
    "ChangeBucket",
    "ChangeKind",
    "CountBucket",
    "HistoryChange",
    "HistoryWindow",
    "ProbeBucket",
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


class CountBucket(_History):
    """How many things happened in one bucket (only buckets with something are listed)."""

    start: float = Field(description="Unix seconds; the bucket lasts bucket_seconds")
    count: int


class ChangeBucket(_History):
    """A subject's state changes in one bucket (only buckets with a change are listed).

    With ``state_before`` and ``state_after`` the timeline is known over the whole
    window even where the exact changes were dropped: quiet between two buckets, it held
    the state the earlier one ended in."""

    start: float = Field(description="Unix seconds; the bucket lasts bucket_seconds")
    count: int
    state_before: str | None = Field(description="before its first change; null: no record")
    state_after: str = Field(description="after its last change")


class ProbeBucket(_History):
    """A service's probes in one bucket."""

    start: float = Field(description="Unix seconds; the bucket lasts bucket_seconds")
    probes: int
    failures: int
    latency_mean: float | None = Field(description="seconds, successful probes only")
    latency_max: float | None = Field(description="seconds, successful probes only")


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
    change_counts: tuple[ChangeBucket, ...] = Field(description="state changes per bucket")


class ServiceHistory(StateTimeline):
    """A service's state changes and its probes, downsampled."""

    probes: tuple[ProbeBucket, ...]


class RescueHistory(_History):
    """Flow rescue's packet counters, as increments per bucket."""

    handed_over: tuple[CountBucket, ...] = Field(
        description="packets of other servers' flows handed to them"
    )
    rescued: tuple[CountBucket, ...] = Field(
        description="packets of our flows other servers handed to us"
    )


class SidecarHistory(_History):
    """The recent past of the sidecar, kept in memory (lost at restart)."""

    window: HistoryWindow
    since: float = Field(description="Unix seconds: the window's start")
    until: float = Field(description="Unix seconds: now")
    bucket_seconds: float
    recorded_since: float = Field(description="Unix seconds: when this sidecar started")
    prefixes: tuple[StateTimeline, ...]
    services: tuple[ServiceHistory, ...]
    peers: tuple[StateTimeline, ...]
    rescue: RescueHistory | None = Field(description="null until rescue's counters were read")

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
