"""What the decision core takes: one frozen value per thing that happened.

The shell turns every kernel, network, file and operator event into one of these and
hands it to ``SidecarCore.handle`` together with the time (an ``Instant``). Inputs carry
facts, not instructions: "the probe of web failed", not "withdraw 10.255.0.1/32".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from anycast_announcer.config import Config
from anycast_announcer.results import ProbeResult

__all__ = [
    "AddressChanged",
    "BfdChanged",
    "ConfigLoaded",
    "ConfigRejected",
    "ConnectionsCounted",
    "DrainFileChanged",
    "DrainHookFinished",
    "DrainRequested",
    "Input",
    "Instant",
    "PeerEndOfRib",
    "PeerRoutesReceived",
    "ProbeCompleted",
    "RescueApplied",
    "ServiceFailed",
    "SessionChanged",
    "Source",
    "UndrainRequested",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Instant:
    """The time of an input, on both clocks the core needs."""

    monotonic: float
    """Deadlines (drain phases, dampening) count on this clock; it never jumps."""
    wall: float
    """Unix seconds, only for what operators read (``last_change_at``, drain start)."""


@dataclass(frozen=True, slots=True)
class ProbeCompleted:
    """A probe of a service finished."""

    service: str
    result: ProbeResult


Source = Literal["listener", "process", "unit"]
"""Kernel and system event sources that prove a service gone."""


@dataclass(frozen=True, slots=True)
class ServiceFailed:
    """An event source proved a service gone: its listener closed, its process exited."""

    service: str
    source: Source
    reason: str
    """``listener closed``, ``process exited``, ``unit failed``..."""


@dataclass(frozen=True, slots=True)
class SessionChanged:
    """A BGP session went up or down."""

    peer: str
    up: bool
    reason: str


@dataclass(frozen=True, slots=True)
class PeerRoutesReceived:
    """A BGP peer sent an UPDATE (ExaBGP's receive API; only with rescue.membership)."""

    peer: str
    announced: tuple[tuple[str, tuple[str, ...]], ...]
    """(prefix, standard communities 'A:B') of each announced or replaced route."""
    withdrawn: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerEndOfRib:
    """A BGP peer finished sending its table for one family (an End-of-RIB marker, from
    ExaBGP's receive API; only with rescue.membership)."""

    peer: str
    family: str
    """``ipv4 unicast``, ``ipv6 unicast``..."""


@dataclass(frozen=True, slots=True)
class RescueApplied:
    """The rescue data path for ``member`` (this server's underlay address) is installed."""

    member: str
    inherited: tuple[str, ...] = ()
    """Peers a first install found in the kernel and kept (learnt membership): held down
    until their member routes arrive."""
    peers: tuple[str, ...] = ()
    """Every peer the applied plan holds (the start-up gate waits for the learnt ones)."""


@dataclass(frozen=True, slots=True)
class BfdChanged:
    """The BFD session of a BGP peer changed its verdict.

    ``up`` is True once the session is UP, False when it went down by detection (or the
    peer said DOWN), and None when BFD has no verdict: not up yet, or AdminDown on
    either side, which RFC 5882 §3.2 says must not take the BGP session down.
    """

    peer: str
    up: bool | None
    reason: str


@dataclass(frozen=True, slots=True)
class AddressChanged:
    """An address appeared on or left an interface."""

    interface: str
    address: IPAddress
    present: bool


@dataclass(frozen=True, slots=True)
class DrainFileChanged:
    """The drain file appeared or disappeared."""

    present: bool


@dataclass(frozen=True, slots=True)
class DrainHookFinished:
    """A prefix's drain hook returned (or timed out)."""

    prefix: str
    ok: bool
    outcome: str


@dataclass(frozen=True, slots=True)
class ConnectionsCounted:
    """Established connections to a draining prefix's ports."""

    prefix: str
    count: int


@dataclass(frozen=True, slots=True)
class DrainRequested:
    """An operator asked to drain prefixes (all when ``prefixes`` is None)."""

    request: int
    """Echoed in the ``Reply`` effect, so the shell can answer the right caller."""
    prefixes: tuple[str, ...] | None
    reason: str


@dataclass(frozen=True, slots=True)
class UndrainRequested:
    """An operator asked to end drains (all when ``prefixes`` is None)."""

    request: int
    prefixes: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class ConfigLoaded:
    """The shell read and validated the config file (a reload)."""

    config: Config
    request: int | None
    """The operator request that asked for it; None for SIGHUP."""


@dataclass(frozen=True, slots=True)
class ConfigRejected:
    """A reload found an invalid config file; nothing changes."""

    message: str
    """``path: field: message`` lines, secrets never included."""
    request: int | None


Input = (
    ProbeCompleted
    | ServiceFailed
    | SessionChanged
    | PeerRoutesReceived
    | PeerEndOfRib
    | RescueApplied
    | BfdChanged
    | AddressChanged
    | DrainFileChanged
    | DrainHookFinished
    | ConnectionsCounted
    | DrainRequested
    | UndrainRequested
    | ConfigLoaded
    | ConfigRejected
)
