"""Status values from the core's records (pure; the core composes them in ``status``)."""

from __future__ import annotations

from collections.abc import Sequence

from anycast_announcer.config import PeerConfig, PrefixConfig, ServiceConfig
from anycast_announcer.core.records import PeerRecord, ServiceRecord
from anycast_announcer.drain import PrefixDrain
from anycast_announcer.policy import PrefixDecision
from anycast_announcer.routes import Route
from anycast_announcer.status import PeerStatus, PrefixStatus, RouteAttributes, ServiceStatus

__all__ = ["peer_status", "prefix_status", "route_attributes", "service_status"]


def service_status(spec: ServiceConfig, record: ServiceRecord) -> ServiceStatus:
    """A service's state machine and recent results."""
    machine = record.machine
    return ServiceStatus(
        name=spec.name,
        check_type=spec.check.type,
        state=machine.state.value,
        consecutive_successes=machine.successes,
        consecutive_failures=machine.failures,
        rise=spec.rise,
        fall=spec.fall,
        interval=spec.interval,
        last_results=tuple(record.results),
        last_change_at=record.last_change_at,
        last_change_reason=record.last_change_reason,
    )


def prefix_status(
    prefix: PrefixConfig,
    decision: PrefixDecision,
    drain: PrefixDrain,
    *,
    penalty: float,
    address_present: bool,
    routes: Sequence[Route],
) -> PrefixStatus:
    """A prefix's decision, drain and dampening, and the routes sent for it per peer."""
    return PrefixStatus(
        prefix=str(prefix.prefix),
        state=decision.state,
        reason=decision.reason,
        services=tuple(prefix.services),
        require=prefix.require,
        address_present=address_present,
        interface=prefix.interface,
        bandwidth_mbps=prefix.bandwidth_mbps,
        drain_phase=drain.phase.value,
        drain_reason=drain.reason,
        drain_origin=drain.origin.value if drain.origin is not None else None,
        established_connections=drain.connections,
        dampening_penalty=round(penalty, 1),
        routes={route.peer: route_attributes(route) for route in routes},
    )


def route_attributes(route: Route) -> RouteAttributes:
    """The attributes one session carries for a prefix."""
    return RouteAttributes(
        med=route.med,
        communities=route.communities,
        large_communities=route.large_communities,
        extended_communities=route.extended_communities,
        as_path=route.as_path,
        bandwidth_bps=route.bandwidth_bps,
    )


def peer_status(peer: PeerConfig, record: PeerRecord) -> PeerStatus:
    """One BGP session."""
    return PeerStatus(
        address=str(peer.address),
        peer_as=peer.peer_as,
        state="up" if record.up else "down",
        last_change_at=record.last_change_at,
        last_change_reason=record.last_change_reason,
    )
