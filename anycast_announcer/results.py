"""What a probe tells the core: ``ProbeResult`` and its ``ProbeCategory`` (pure values).

They live outside ``checks`` so that the decision core, which only reads results, does
not import the probes themselves (and aiohttp with them). ``checks`` re-exports both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ProbeCategory", "ProbeResult"]


class ProbeCategory(enum.Enum):
    """Why a probe ended as it did; the failure values are metrics' ``reason`` labels."""

    OK = "ok"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    HTTP_STATUS = "http_status"
    BODY_MISMATCH = "body_mismatch"
    TLS = "tls"
    EXIT_STATUS = "exit_status"
    SIGNAL = "signal"
    CANNOT_RUN = "cannot_run"
    UNREACHABLE = "unreachable"
    OTHER = "other"
    SIDECAR = "sidecar"
    """The sidecar could not probe (out of descriptors, memory, processes): no evidence."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe: healthy or not, how long it took, and why.

    ``category`` defaults to what ``ok`` implies (OK, or OTHER for a failure), so code that
    only knows ok/latency/reason keeps working; ``ok`` and ``category is OK`` always agree.
    """

    ok: bool
    latency: float
    """Seconds from the start of the probe to its verdict (monotonic clock)."""
    reason: str
    """Short and stable (``"connect refused"``, ``"http status 503"``), meant for log lines."""
    category: ProbeCategory = ProbeCategory.OTHER
    resource: str | None = None
    """For ``SIDECAR`` results: which resource ran out (``RESOURCE_KINDS``); else None."""

    def __post_init__(self) -> None:
        if self.ok and self.category is ProbeCategory.OTHER:
            object.__setattr__(self, "category", ProbeCategory.OK)
        if self.ok != (self.category is ProbeCategory.OK):
            raise ValueError(f"ok={self.ok} contradicts category {self.category.value}")
        if self.category is ProbeCategory.SIDECAR and self.resource is None:
            object.__setattr__(self, "resource", "other")

    @property
    def sidecar_fault(self) -> bool:
        """The sidecar failed to probe: this result says nothing about the service."""
        return self.category is ProbeCategory.SIDECAR
