"""What the sidecar tells its readers (status API, page, CLI, metrics), as frozen values.

Readers never touch the supervisor's state: they get a ``SidecarStatus`` snapshot, built
on demand, and they ask for changes through ``Control``, whose requests the supervisor
applies in its own loop like any other input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Control",
    "ControlResult",
    "DrainPhase",
    "ExabgpStatus",
    "PeerStatus",
    "PrefixStatus",
    "ProbeStatus",
    "ServiceStatus",
    "SidecarStatus",
]


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """One probe result, with its wall-clock time (Unix seconds)."""

    at: float
    ok: bool
    latency: float
    reason: str


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """A service's health state and recent history."""

    name: str
    check_type: str
    state: str
    """``unknown``, ``up`` or ``down``."""
    consecutive_successes: int
    consecutive_failures: int
    rise: int
    fall: int
    interval: float
    last_results: tuple[ProbeStatus, ...]
    """Newest last, at most ten."""
    last_change_at: float | None
    last_change_reason: str | None


DrainPhase = str
"""``none``, ``hook``, ``waiting_connections``, ``graceful_shutdown``, ``withdrawn``."""


@dataclass(frozen=True, slots=True)
class PrefixStatus:
    """A prefix's state and what is being sent for it."""

    prefix: str
    state: str
    """``announced``, ``withdrawn``, ``draining`` or ``dampened``."""
    reason: str
    services: tuple[str, ...]
    require: str
    address_present: bool
    interface: str
    bandwidth_mbps: float | None
    drain_phase: DrainPhase
    drain_reason: str | None
    established_connections: int | None
    """Counted during a drain; None otherwise."""
    dampening_penalty: float
    routes: dict[str, dict[str, object]] = field(default_factory=dict)
    """Per peer: the attributes being sent (med, communities, bandwidth_bps, ...)."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One BGP session, as ExaBGP reports it."""

    address: str
    peer_as: int
    state: str
    """``up`` or ``down``."""
    last_change_at: float | None
    last_change_reason: str | None


@dataclass(frozen=True, slots=True)
class ExabgpStatus:
    """The ExaBGP child process."""

    pid: int | None
    running: bool
    connected: bool
    restarts: int
    routes_acknowledged: int
    routes_desired: int


@dataclass(frozen=True, slots=True)
class SidecarStatus:
    """Everything an operator asks first: what is announced, and why."""

    version: str
    started_at: float
    uptime: float
    config_path: str
    config_loaded_at: float
    last_reload_error: str | None
    services: tuple[ServiceStatus, ...]
    prefixes: tuple[PrefixStatus, ...]
    peers: tuple[PeerStatus, ...]
    exabgp: ExabgpStatus


@dataclass(frozen=True, slots=True)
class ControlResult:
    """The outcome of a control request; ``ok`` False carries the user's error."""

    ok: bool
    message: str
    prefixes: tuple[str, ...] = ()


class Control(Protocol):
    """The seam between the operator surface and the supervisor."""

    def status(self) -> SidecarStatus:
        """A snapshot of the whole sidecar."""
        ...

    def ready(self) -> bool:
        """Whether ExaBGP runs and the first probe round is done."""
        ...

    async def drain(self, prefixes: list[str] | None, reason: str) -> ControlResult:
        """Start draining the given prefixes (all when None)."""
        ...

    async def undrain(self, prefixes: list[str] | None) -> ControlResult:
        """Stop draining (all when None) and announce normally again."""
        ...

    async def reload(self) -> ControlResult:
        """Re-read the config file; invalid files change nothing."""
        ...
