"""The core's per-service and per-session records (mutable, owned by ``SidecarCore``).

They live apart from ``sidecar`` so that ``snapshot``, which turns them into status
values, and ``sidecar``, which owns them, both import them without importing each other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from anycast_announcer.health import ServiceHealth
from anycast_announcer.status import ProbeStatus

__all__ = ["RESULTS_KEPT", "PeerRecord", "ServiceRecord"]

RESULTS_KEPT = 10
"""Probe results kept per service for the status snapshot."""


@dataclass(slots=True)
class ServiceRecord:
    """One service's health machine and what operators see of its history."""

    machine: ServiceHealth
    results: deque[ProbeStatus] = field(default_factory=lambda: deque(maxlen=RESULTS_KEPT))
    last_change_at: float | None = None
    last_change_reason: str | None = None
    fast: bool = False
    """Whether the probes run at the confirm interval (told to the scheduler)."""


@dataclass(slots=True)
class PeerRecord:
    """One BGP session as ExaBGP reported it."""

    up: bool = False
    last_change_at: float | None = None
    last_change_reason: str | None = None
