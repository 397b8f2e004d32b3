"""Route policy: from service health to the exact set of routes each session should carry.

Two pure steps, both recomputed from scratch on every input (they are cheap, and a
recomputation cannot drift the way incremental bookkeeping can):

1. ``decide_prefix``: is a prefix announceable? Its services must be up (``require: all``
   or ``any``) and its address must be on its local interface: a server that does not
   hold the address would black-hole what the fabric sends it.
2. ``desired_routes``: for every announceable prefix and every established session of the
   prefix's address family, a ``Route`` with its attributes. The prefix's bandwidth is
   divided over the established sessions (``bandwidth_split: up_sessions``) so that a
   server dual-homed to two leaves weighs what it is worth in the fabric, not twice that;
   when one session drops, the survivor carries the whole weight.

Between the two, ``apply_operations`` lays an operator's drain and flap dampening over
the health decision; neither can ever announce what health withdrew.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from anycast_announcer.config import Config, PrefixConfig
from anycast_announcer.drain import DrainPhase
from anycast_announcer.health import Health
from anycast_announcer.routes import (
    Route,
    RouteKey,
    link_bandwidth_community,
    link_bandwidth_global_as,
    weight_community_value,
)
from anycast_announcer.status import PrefixState

__all__ = [
    "GRACEFUL_SHUTDOWN",
    "PrefixDecision",
    "apply_operations",
    "decide_prefix",
    "desired_routes",
]


GRACEFUL_SHUTDOWN = "65535:0"
"""RFC 8326's well-known community: receivers set local preference 0 on the path."""


@dataclass(frozen=True, slots=True)
class PrefixDecision:
    """Whether a prefix should be announced, and the reason in words an operator reads."""

    prefix: str
    announce: bool
    reason: str
    overlay: PrefixState | None = None
    """The state a drain or dampening imposed; None for a plain health decision."""
    graceful_shutdown: bool = False

    @property
    def state(self) -> PrefixState:
        """``announced``, ``withdrawn``, ``draining``, ``drained`` or ``dampened``."""
        if self.overlay is not None:
            return self.overlay
        return "announced" if self.announce else "withdrawn"


def decide_prefix(
    prefix: PrefixConfig,
    health: Mapping[str, Health],
    address_present: bool,
    why: Mapping[str, str | None] | None = None,
) -> PrefixDecision:
    """Decide one prefix from its services' health and the presence of its address.

    ``why`` holds each service's last change reason (``probe: connect refused``,
    ``listener closed``), which a withdrawal repeats so operators see the cause.
    """
    name = str(prefix.prefix)
    not_up = [service for service in prefix.services if health.get(service) is not Health.UP]
    if prefix.require == "all" and not_up:
        states = ", ".join(_service_state(s, health, why) for s in not_up)
        return PrefixDecision(name, False, f"service {states}")
    if prefix.require == "any" and len(not_up) == len(prefix.services):
        return PrefixDecision(name, False, "no service up")
    if not address_present:
        address = prefix.prefix.network_address
        return PrefixDecision(name, False, f"address {address} not on {prefix.interface}")
    return PrefixDecision(name, True, "services up")


def _service_state(
    service: str, health: Mapping[str, Health], why: Mapping[str, str | None] | None
) -> str:
    state = health.get(service, Health.UNKNOWN)
    reason = why.get(service) if why is not None and state is Health.DOWN else None
    return f"{service} {state.value}" + (f" ({reason})" if reason else "")


def apply_operations(
    health: PrefixDecision,
    drain_phase: DrainPhase,
    drain_reason: str | None,
    dampened_for: float | None,
) -> PrefixDecision:
    """Overlay a drain and dampening on the health decision.

    ``dampened_for`` is the seconds of suppression left (None when not suppressed).
    Neither ever turns a withdrawn prefix into an announced one.
    """
    name = health.prefix
    if drain_phase is DrainPhase.WITHDRAWN:
        return PrefixDecision(name, False, f"drained: {drain_reason}", overlay="drained")
    if drain_phase is not DrainPhase.NONE:
        return PrefixDecision(
            name,
            health.announce,
            f"draining ({drain_phase.value}): {drain_reason}"
            + ("" if health.announce else f"; {health.reason}"),
            overlay="draining",
            graceful_shutdown=drain_phase is DrainPhase.GRACEFUL_SHUTDOWN,
        )
    if health.announce and dampened_for is not None:
        return PrefixDecision(
            name,
            False,
            f"dampened after flapping; released in {dampened_for:.0f}s",
            overlay="dampened",
        )
    return health


def desired_routes(
    config: Config,
    decisions: Mapping[str, PrefixDecision],
    sessions_up: Collection[str],
) -> dict[RouteKey, Route]:
    """Every route every established session should carry now."""
    routes: dict[RouteKey, Route] = {}
    for prefix in config.prefixes:
        decision = decisions.get(str(prefix.prefix))
        if decision is None or not decision.announce:
            continue
        peers = [
            str(peer.address)
            for peer in config.bgp.peers
            if peer.address.version == prefix.prefix.version and str(peer.address) in sessions_up
        ]
        if not peers:
            continue
        share = 1 if config.bgp.bandwidth_split == "none" else len(peers)
        for peer in peers:
            route = _route(config, prefix, peer, share, decision.graceful_shutdown)
            routes[route.key] = route
    return routes


def _route(
    config: Config, prefix: PrefixConfig, peer: str, share: int, graceful_shutdown: bool
) -> Route:
    communities = list(prefix.communities)
    if graceful_shutdown:
        communities.append(GRACEFUL_SHUTDOWN)
    extended: list[str] = []
    bandwidth_bps: float | None = None
    if prefix.bandwidth_mbps is not None:
        bandwidth_bps = prefix.bandwidth_mbps * 1e6 / share
        global_as = link_bandwidth_global_as(config.bgp.local_as, prefix.bandwidth_asn)
        extended.append(
            link_bandwidth_community(
                global_as, bandwidth_bps, transitive=prefix.bandwidth_community == "transitive"
            )
        )
        if prefix.weight_community is not None:
            value = weight_community_value(
                prefix.bandwidth_mbps / share, prefix.weight_community.unit_mbps
            )
            communities.append(f"{prefix.weight_community.asn}:{value}")
    return Route(
        peer=peer,
        prefix=str(prefix.prefix),
        med=prefix.med,
        communities=tuple(communities),
        large_communities=tuple(prefix.large_communities),
        extended_communities=tuple(extended),
        # ExaBGP sends an explicit as-path verbatim (it adds our AS only when the path is
        # empty), so prepending N times means N + 1 copies of our AS.
        as_path=(config.bgp.local_as,) * (prefix.as_path_prepend + 1)
        if prefix.as_path_prepend
        else (),
        bandwidth_bps=bandwidth_bps,
    )
