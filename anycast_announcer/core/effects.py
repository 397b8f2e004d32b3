"""What the decision core asks of the shell: one frozen value per thing to do.

The core never performs I/O. Each step returns a list of effects, in the order they must
be performed; the shell (``anycast_announcer.supervisor``) carries them out. Desired-state
effects (``SyncRoutes``, ``ScheduleProbes``) describe the whole state, not a change, so
performing the latest one is always enough. The metric effects report what changed, for
Prometheus; logs are written by the core itself (structlog), as stable event names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from anycast_announcer.config import (
    BgpConfig,
    Config,
    DrainHook,
    ExabgpConfig,
    LoggingConfig,
    PeerConfig,
    ServiceConfig,
)
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.results import ProbeResult
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import ControlResult, DrainPhaseName, PrefixState, RescueGateState

__all__ = [
    "ConfigApplied",
    "ConfigureLogging",
    "Detected",
    "DrainPhaseChanged",
    "Effect",
    "GateChanged",
    "PeerChanged",
    "PersistDrains",
    "PrefixChanged",
    "ProbeCadence",
    "ProbeRecorded",
    "ReloadFinished",
    "Reply",
    "RescueUnconfigured",
    "RestartExabgp",
    "ScheduleProbes",
    "ServiceChanged",
    "SidecarFaulted",
    "StartDrainWorker",
    "StopDrainWorker",
    "SyncBfd",
    "SyncRescue",
    "SyncRoutes",
    "Unconfigured",
]


@dataclass(frozen=True, slots=True)
class SyncRoutes:
    """Every route every session should carry now (the driver sends the difference)."""

    routes: Mapping[RouteKey, Route]


@dataclass(frozen=True, slots=True)
class ScheduleProbes:
    """The services to probe; unchanged specs keep their running schedule."""

    services: tuple[ServiceConfig, ...]


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    """A reload took effect: the shell points its watchers at the new configuration."""

    config: Config


@dataclass(frozen=True, slots=True)
class SyncRescue:
    """Install or reconcile the flow-rescue data path for this configuration.

    Desired state: the shell builds the plan (with this host's facts), reads what is
    installed and applies the difference. At start it must be in place before anything
    is announced, so no flow the fabric moves here is reset.
    """

    config: Config
    learnt: tuple[str, ...] = ()
    """Members learnt from member routes (rescue.membership), beside the static ones."""


@dataclass(frozen=True, slots=True)
class RescueUnconfigured:
    """The ``rescue:`` section is gone. The data path stays (it keeps rescuing the live
    connections of the group) until an operator runs ``anycast-announcer rescue remove``."""


@dataclass(frozen=True, slots=True)
class ProbeCadence:
    """Probe the service at its confirm interval (``fast``) or its normal interval.

    Fast while a streak is changing the service's state (a first failure of a healthy
    service, a first success of a failed one), so rise and fall are confirmed in a
    fraction of the interval."""

    service: str
    fast: bool


@dataclass(frozen=True, slots=True)
class StartDrainWorker:
    """Run the drain hook, then count established connections to the prefix's ports."""

    prefix: str
    hook: DrainHook | None
    hook_timeout: float
    address: str
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StopDrainWorker:
    """The prefix's drain no longer needs its hook or connection counts."""

    prefix: str


@dataclass(frozen=True, slots=True)
class PersistDrains:
    """Write the drains that must survive a restart (the whole set) to ``path``."""

    path: str
    drains: tuple[PersistedDrain, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to an operator request."""

    request: int
    result: ControlResult


@dataclass(frozen=True, slots=True)
class RestartExabgp:
    """ExaBGP reads its neighbors at start only: restart it with these."""

    bgp: BgpConfig
    settings: ExabgpConfig


@dataclass(frozen=True, slots=True)
class ConfigureLogging:
    """The logging section changed."""

    logging: LoggingConfig


# -- observations, for metrics and the history (``anycast_announcer.history``) ---------


@dataclass(frozen=True, slots=True)
class ProbeRecorded:
    """A probe result was taken into account."""

    service: str
    result: ProbeResult


@dataclass(frozen=True, slots=True)
class ServiceChanged:
    """A service went up or down (after rise/fall)."""

    service: str
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PrefixChanged:
    """A prefix changed state."""

    prefix: str
    state: PrefixState
    announced: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SyncBfd:
    """Every BFD session to run now: the peers whose config asks for BFD (desired state;
    the shell adds, removes and re-times sessions, the last through a Poll Sequence)."""

    peers: tuple[PeerConfig, ...]


@dataclass(frozen=True, slots=True)
class PeerChanged:
    """A BGP session went up or down."""

    peer: str
    up: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GateChanged:
    """The start-up gate of the anycast prefixes (rescue.membership) changed state."""

    state: RescueGateState
    opened_by: str | None = None
    """``end_of_rib``, ``timeout``...; None while closed."""


@dataclass(frozen=True, slots=True)
class DrainPhaseChanged:
    """A prefix's drain entered a phase; ``since`` is wall-clock (Unix) time."""

    prefix: str
    phase: DrainPhaseName
    since: float


@dataclass(frozen=True, slots=True)
class ReloadFinished:
    """A reload was applied (``ok``) or rejected, at wall-clock time ``at``."""

    ok: bool
    at: float


@dataclass(frozen=True, slots=True)
class SidecarFaulted:
    """The sidecar itself failed (e.g. out of file descriptors); not a service failure."""

    kind: str
    """Which resource ran out (``checks.RESOURCE_KINDS``)."""
    detail: str


@dataclass(frozen=True, slots=True)
class Detected:
    """A detection source reported a failure; ``withdrew`` whether it took the service down
    (an event about a service already down, or a dismissed one, did not)."""

    source: Literal["listener", "process", "unit", "address", "probe"]
    withdrew: bool


@dataclass(frozen=True, slots=True)
class Unconfigured:
    """A reload removed these names: whatever was reported about them is void."""

    services: tuple[str, ...]
    prefixes: tuple[str, ...]
    peers: tuple[str, ...]


Effect = (
    SyncRoutes
    | ScheduleProbes
    | SyncBfd
    | ConfigApplied
    | SyncRescue
    | RescueUnconfigured
    | ProbeCadence
    | StartDrainWorker
    | StopDrainWorker
    | PersistDrains
    | Reply
    | RestartExabgp
    | ConfigureLogging
    | ProbeRecorded
    | ServiceChanged
    | PrefixChanged
    | PeerChanged
    | DrainPhaseChanged
    | GateChanged
    | ReloadFinished
    | SidecarFaulted
    | Detected
    | Unconfigured
)
