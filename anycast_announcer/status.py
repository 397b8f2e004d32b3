"""What the sidecar tells its readers (status API, page, CLI, metrics): one set of models.

These pydantic models are the only field list of the operator surface. The decision core
builds a ``SidecarStatus`` on demand; ``GET /status`` serializes it with
``model_dump(mode="json")``; the OpenAPI components are generated from the same models
(``http/openapi.py`` writes only the paths by hand); the CLI validates the JSON it gets
back into them and renders tables from the result. A field added here appears everywhere.

Every Unix time ``x_at`` has an ``x_at_iso`` sibling (ISO 8601, UTC) for people reading
the JSON; non-finite numbers are written as ``null`` (JSON has no NaN). Field names are a
contract (scripts read them): add fields, do not rename them.

Readers never touch the core's state: they get a snapshot, and ask for changes through
``Control``, whose requests the supervisor feeds to the core like any other input.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, computed_field

from anycast_announcer.historymodels import HistoryWindow, SidecarHistory
from anycast_announcer.timefmt import iso_time

__all__ = [
    "Control",
    "ControlResult",
    "DrainPhaseName",
    "ExabgpStatus",
    "PeerState",
    "PeerStatus",
    "PrefixState",
    "PrefixStatus",
    "ProbeStatus",
    "RescueGateState",
    "RescueGateStatus",
    "RescueMemberStatus",
    "RescueMembershipStatus",
    "RescuePeerStatus",
    "RescueStatus",
    "RescueTraffic",
    "RouteAttributes",
    "ServiceState",
    "ServiceStatus",
    "SidecarFaultStatus",
    "SidecarStatus",
    "iso_time",
]

ServiceState = Literal["unknown", "up", "down"]
PrefixState = Literal["announced", "withdrawn", "draining", "drained", "dampened"]
DrainPhaseName = Literal["none", "hook", "waiting_connections", "graceful_shutdown", "withdrawn"]
PeerState = Literal["up", "down"]


class _Status(BaseModel):
    # Frozen: a snapshot never changes after it was taken. Unknown keys are ignored when
    # the CLI reads a newer sidecar's answer; the sidecar itself never produces them.
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="null")


class ProbeStatus(_Status):
    """One probe result, with its wall-clock time (Unix seconds)."""

    at: float = Field(description="Unix seconds")
    ok: bool
    latency: float = Field(description="seconds")
    reason: str

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def at_iso(self) -> str | None:
        return iso_time(self.at)


class ServiceStatus(_Status):
    """A service's health state and recent history."""

    name: str
    check_type: str
    state: ServiceState
    consecutive_successes: int
    consecutive_failures: int
    rise: int
    fall: int
    interval: float = Field(description="seconds")
    last_results: tuple[ProbeStatus, ...] = Field(description="newest last, at most ten")
    last_change_at: float | None = Field(description="Unix seconds")
    last_change_reason: str | None

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def last_change_at_iso(self) -> str | None:
        return iso_time(self.last_change_at)


class RouteAttributes(_Status):
    """What one BGP session carries for a prefix."""

    med: int | None
    communities: tuple[str, ...]
    large_communities: tuple[str, ...]
    extended_communities: tuple[str, ...]
    as_path: tuple[int, ...]
    bandwidth_bps: float | None = Field(description="what the link-bandwidth community encodes")


class PrefixStatus(_Status):
    """A prefix's state and what is being sent for it."""

    prefix: str
    state: PrefixState
    reason: str
    services: tuple[str, ...]
    require: Literal["all", "any"]
    address_present: bool
    interface: str
    bandwidth_mbps: float | None
    drain_phase: DrainPhaseName
    drain_reason: str | None
    drain_origin: Literal["operator", "drain_file", "restored"] | None = Field(
        default=None, description="who started the drain; null without a drain"
    )
    established_connections: int | None = Field(description="counted during a drain")
    dampening_penalty: float
    routes: dict[str, RouteAttributes] = Field(
        default_factory=dict, description="per peer: the attributes being sent"
    )


BfdState = Literal["admin_down", "down", "init", "up"]


class BfdStatus(_Status):
    """A peer's BFD session (RFC 5880) as our speaker sees it; intervals in seconds."""

    state: BfdState
    remote_state: BfdState
    local_discriminator: int
    remote_discriminator: int = Field(description="0 until the peer has answered")
    local_diag: str
    remote_diag: str
    transmit_interval: float | None = Field(description="negotiated, before jitter")
    detection_time: float | None = Field(description="how long a silent peer stays up")
    remote_min_rx: float
    remote_min_tx: float | None
    remote_multiplier: int | None
    polling: bool = Field(description="a Poll Sequence (timer change) is under way")
    state_changes: int
    last_change_at: float | None = Field(description="Unix seconds")
    packets_sent: int
    packets_received: int
    packets_discarded: int


class PeerStatus(_Status):
    """One BGP session, as ExaBGP reports it, and BFD's verdict on it."""

    address: str
    peer_as: int
    state: PeerState
    last_change_at: float | None = Field(description="Unix seconds")
    last_change_reason: str | None
    bfd: BfdStatus | None = Field(default=None, description="null without bfd for this peer")

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def last_change_at_iso(self) -> str | None:
        return iso_time(self.last_change_at)


class ExabgpStatus(_Status):
    """The ExaBGP child process."""

    pid: int | None
    running: bool
    connected: bool
    restarts: int
    routes_acknowledged: int
    routes_desired: int


class RescueTraffic(_Status):
    """Packets and bytes since the data path was installed."""

    packets: int
    bytes: int


class RescuePeerStatus(_Status):
    """Flow rescue with one other server of the group."""

    peer: str = Field(description="its underlay address")
    forwarded: RescueTraffic = Field(
        description="packets of its flows handed to it (learnt, and one copy of each "
        "replicated packet)"
    )
    received: RescueTraffic = Field(description="packets it handed to us that we hold")
    refused: RescueTraffic = Field(description="packets it handed to us that we do not hold")
    feedback_sent: RescueTraffic
    feedback_received: RescueTraffic


class RescueMemberStatus(_Status):
    """A member of the group learnt from its member route."""

    address: str = Field(description="its underlay address")
    present: bool = Field(description="some BGP peer carries its member route now")
    held_for: float | None = Field(
        description="seconds it stays in the data path after its route left (hold-down)"
    )


RescueGateState = Literal["waiting_for_eor", "waiting_for_data_path", "open"]


class RescueGateStatus(_Status):
    """The start-up gate: anycast prefixes wait until the group is known and installed."""

    state: RescueGateState = Field(
        description="waiting_for_eor: no End-of-RIB from an established peer yet; "
        "waiting_for_data_path: the member set is known, the data path does not hold it "
        "yet; open: anycast prefixes may be announced (for the rest of the process's life)"
    )
    since: float = Field(description="Unix seconds the gate entered this state")
    opened_by: str | None = Field(
        description="why it opened: end_of_rib, timeout, reload (membership configured "
        "while running) or unconfigured (membership removed by a reload); None while closed"
    )
    opens_in: float | None = Field(
        description="seconds until the gate opens anyway (gate_timeout after the first "
        "established session); None while open or before any session came up"
    )


class RescueMembershipStatus(_Status):
    """Membership learnt from the fabric (rescue.membership); not anycast prefixes."""

    community: str
    announced: bool = Field(description="this server's member route is being announced")
    members: tuple[RescueMemberStatus, ...]
    ignored: dict[str, int] = Field(
        description="received routes that were not accepted as member routes, by reason"
    )
    gate: RescueGateStatus | None = Field(
        default=None, description="the start-up gate of the anycast prefixes"
    )


class RescueStatus(_Status):
    """The flow-rescue data path (kernel state; it lives on without the sidecar)."""

    installed: bool
    member: str | None = Field(description="this server's underlay address in the group")
    peers: tuple[RescuePeerStatus, ...]
    replicated: RescueTraffic = Field(description="packets copied to every peer (unlearnt)")
    icmp_relayed: RescueTraffic = Field(
        description="ICMP errors about our flows relayed to the group (PMTUD)"
    )
    orphans: RescueTraffic = Field(description="packets of flows no server claimed: reset")
    last_applied_at: float | None = Field(description="Unix seconds")
    last_error: str | None
    membership: RescueMembershipStatus | None = None


class SidecarFaultStatus(_Status):
    """The sidecar's own trouble (not the services'): last state is kept meanwhile."""

    kind: str = Field(description="e.g. 'resource' (out of file descriptors or memory)")
    detail: str
    at: float = Field(description="Unix seconds")

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def at_iso(self) -> str | None:
        return iso_time(self.at)


class SidecarStatus(_Status):
    """Everything an operator asks first: what is announced, and why."""

    version: str
    started_at: float = Field(description="Unix seconds")
    uptime: float = Field(description="seconds")
    config_path: str
    config_loaded_at: float = Field(description="Unix seconds")
    last_reload_error: str | None
    sidecar_fault: SidecarFaultStatus | None = Field(
        default=None, description="the sidecar's own latest resource failure, while recent"
    )
    services: tuple[ServiceStatus, ...]
    prefixes: tuple[PrefixStatus, ...]
    peers: tuple[PeerStatus, ...]
    exabgp: ExabgpStatus
    rescue: RescueStatus | None = Field(
        default=None, description="flow rescue; null when not configured"
    )

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def started_at_iso(self) -> str | None:
        return iso_time(self.started_at)

    @computed_field(description="the same time, ISO 8601 UTC")  # type: ignore[prop-decorator]
    @property
    def config_loaded_at_iso(self) -> str | None:
        return iso_time(self.config_loaded_at)


class ControlResult(_Status):
    """The outcome of a control request; ``ok`` False carries the user's error."""

    ok: bool
    message: str
    prefixes: tuple[str, ...] = ()


class Control(Protocol):
    """The seam between the operator surface and the supervisor."""

    def status(self) -> SidecarStatus:
        """A snapshot of the whole sidecar."""
        ...

    def history(self, window: HistoryWindow) -> SidecarHistory:
        """The last hour or day (``anycast_announcer.history``)."""
        ...

    def ready(self) -> bool:
        """Whether ExaBGP runs, the first probe round is done and the sidecar is sound."""
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
