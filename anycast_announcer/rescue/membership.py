"""Rescue group membership learnt from the BGP fabric (pure).

Theory of operation. Every member of a group announces a *member route* while its
rescue data path is installed: its underlay host address (/32 or /128) tagged with the
group's standard community. The leaves pass these routes to every server, so the BGP
fabric every server already talks to is the group's membership service: no daemon and
no store of our own, and a server joins a group by naming it in its own config.

``Membership`` is fed what ExaBGP's receive API reported (``routes_received``,
``session_down``) with the time, and answers with the member set (``members``) and when
it next changes by itself (``next_deadline``). It holds, per BGP peer, the member
routes that peer currently carries; a member is *present* while any peer carries its
route.

The guard: a route counts only when it comes from a configured BGP peer, carries the
group's community, and is a host route inside ``underlay_prefixes`` (or, with
``route_prefixes``, inside those signalling ranges, standing for the underlay address
with the same host bits: FRR ignores a route whose next hop is its own prefix, which a
member's /32 announced from that very address is). Everything else is
ignored and counted by reason (``ignored``): a rogue or misconfigured announcement
cannot add a member, and ordinary routes (the anycast prefixes of the other servers)
are not members.

Hold-down. A member whose last route goes away (its sidecar stopped, its ExaBGP
restarted for a ``bgp:`` change, its leaf session dropped, or the host died) is kept
for ``hold_down`` seconds before it leaves the member set. The data path outlives the
sidecar on purpose: a stopped or restarting sidecar's server still holds live
connections, and packets the fabric moves away from it must keep being rescued back to
it. A route that comes back within the hold-down cancels it, so a restart changes
nothing. Our own sessions going down (ExaBGP restarting here) hold every member down
the same way instead of emptying the group.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from anycast_announcer.config.rescue import MembershipConfig

__all__ = [
    "IGNORE_REASONS",
    "MemberView",
    "Membership",
    "member_prefix",
    "member_route_prefix",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IGNORE_REASONS = ("unknown_peer", "no_community", "outside_underlay", "not_host_route")
"""Why a received route is not a member route (``Membership.ignored`` keys)."""


def member_prefix(address: IPAddress) -> str:
    """The member route's prefix for an underlay address: its /32 or /128."""
    return f"{address}/{address.max_prefixlen}"


def member_route_prefix(settings: MembershipConfig, address: IPAddress) -> str | None:
    """The prefix of ``address``'s member route: its host route, or, with
    ``route_prefixes``, the host with the same host bits in its signalling range. None
    when ``address`` is outside ``underlay_prefixes``."""
    for index, network in enumerate(settings.underlay_prefixes):
        if network.version == address.version and address in network:
            if settings.route_prefixes is None:
                return member_prefix(address)
            route = settings.route_prefixes[index]
            offset = int(address) - int(network.network_address)
            return member_prefix(ipaddress.ip_address(int(route.network_address) + offset))
    return None


def _member_of_route(settings: MembershipConfig, host: IPAddress) -> IPAddress | None:
    """The member a member route's host address stands for (inverse of the above)."""
    routes = settings.route_prefixes or settings.underlay_prefixes
    # Validated with the config: one route prefix per underlay prefix.
    pairs = zip(routes, settings.underlay_prefixes, strict=True)
    for route, network in pairs:
        if route.version == host.version and host in route:
            offset = int(host) - int(route.network_address)
            return ipaddress.ip_address(int(network.network_address) + offset)
    return None


@dataclass(frozen=True, slots=True)
class MemberView:
    """One learnt member as operators see it (``/status``)."""

    address: str
    present: bool
    """Some peer carries its route now; False while it is held down."""
    leaves_at: float | None
    """Monotonic time it leaves the member set (held down), else None."""


class Membership:
    """The member set learnt from member routes, with a hold-down for departures."""

    def __init__(self, settings: MembershipConfig, peers: Iterable[str]) -> None:
        self._settings = settings
        self._community = settings.community
        self._underlay = tuple(settings.underlay_prefixes)
        self._hold_down = float(settings.hold_down)
        self._peers = frozenset(_normal(peer) for peer in peers)
        self._routes: dict[str, set[IPAddress]] = {}
        """Per peer: the member addresses whose routes it carries now."""
        self._held: dict[IPAddress, float] = {}
        """Departed members and the monotonic time they leave."""
        self.ignored: Counter[str] = Counter()
        """Received routes that are not member routes, by reason."""

    # -- inputs ------------------------------------------------------------------------

    def reconfigure(self, settings: MembershipConfig, peers: Iterable[str], now: float) -> bool:
        """New guard settings or BGP peers (a reload); whether the member set changed.

        Routes already held are checked again against the new guard: one that no
        longer passes departs (with the hold-down, as if withdrawn).
        """
        before = self.members()
        self._settings = settings
        self._community = settings.community
        self._underlay = tuple(settings.underlay_prefixes)
        self._hold_down = float(settings.hold_down)
        self._peers = frozenset(_normal(peer) for peer in peers)
        kept: dict[str, set[IPAddress]] = {}
        for peer, addresses in self._routes.items():
            if peer in self._peers:
                kept[peer] = {a for a in addresses if self._inside(a)}
        present_before = self._present()
        self._routes = kept
        self._depart(present_before - self._present(), now)
        return self.members() != before

    def routes_received(
        self,
        peer: str,
        announced: Iterable[tuple[str, tuple[str, ...]]],
        withdrawn: Iterable[str],
        now: float,
    ) -> bool:
        """A peer's UPDATE: (prefix, communities) announced, prefixes withdrawn.

        Whether the member set changed. An announcement replaces what the peer sent for
        that prefix before, so a route that loses the community is a withdrawal.
        """
        peer = _normal(peer)
        before = self.members()
        present_before = self._present()
        announced = list(announced)
        if peer not in self._peers:
            self.ignored["unknown_peer"] += len(announced)
            return False
        carried = self._routes.setdefault(peer, set())
        for prefix in withdrawn:
            host = _host(prefix)
            address = _member_of_route(self._settings, host) if host is not None else None
            if address is not None:
                carried.discard(address)
        for prefix, communities in announced:
            address = self._accept(prefix, communities)
            host = _host(prefix)
            if address is not None:
                carried.add(address)
            elif host is not None and (member := _member_of_route(self._settings, host)):
                carried.discard(member)
        self._arrive(self._present() - present_before)
        self._depart(present_before - self._present(), now)
        return self.members() != before

    def inherit(self, addresses: Iterable[IPAddress], now: float) -> bool:
        """Members known from elsewhere (the data path found installed at start), held
        down until a member route confirms them; whether the member set changed."""
        before = self.members()
        present = self._present()
        for address in addresses:
            if address not in present and address not in self._held and self._hold_down > 0:
                self._held[address] = now + self._hold_down
        return self.members() != before

    def session_down(self, peer: str, now: float) -> bool:
        """A BGP session went down: its routes are gone. Whether the member set changed."""
        before = self.members()
        present_before = self._present()
        self._routes.pop(_normal(peer), None)
        self._depart(present_before - self._present(), now)
        return self.members() != before

    def expire(self, now: float) -> bool:
        """Drop members whose hold-down ended; whether the member set changed."""
        gone = [address for address, until in self._held.items() if until <= now]
        for address in gone:
            del self._held[address]
        return bool(gone)

    # -- reading -----------------------------------------------------------------------

    def members(self) -> frozenset[IPAddress]:
        """Members in the data path: present, plus held down."""
        return frozenset(self._present() | self._held.keys())

    def next_deadline(self) -> float | None:
        """The monotonic time the earliest hold-down ends, if any."""
        return min(self._held.values(), default=None)

    def view(self) -> tuple[MemberView, ...]:
        """Every learnt member, sorted by address."""
        present = self._present()
        return tuple(
            MemberView(str(address), address in present, self._held.get(address))
            for address in sorted(self.members(), key=lambda a: (a.version, int(a)))
        )

    # -- the guard ---------------------------------------------------------------------

    def _accept(self, prefix: str, communities: tuple[str, ...]) -> IPAddress | None:
        address = _host(prefix)
        if address is None:
            self.ignored["not_host_route"] += 1
            return None
        if self._community not in communities:
            self.ignored["no_community"] += 1
            return None
        member = _member_of_route(self._settings, address)
        if member is None:
            self.ignored["outside_underlay"] += 1
            return None
        return member

    def _inside(self, address: IPAddress) -> bool:
        return any(n.version == address.version and address in n for n in self._underlay)

    def _present(self) -> set[IPAddress]:
        return set().union(*self._routes.values()) if self._routes else set()

    def _arrive(self, arrived: set[IPAddress]) -> None:
        for address in arrived:
            self._held.pop(address, None)

    def _depart(self, departed: set[IPAddress], now: float) -> None:
        for address in departed:
            if self._hold_down > 0:
                self._held[address] = now + self._hold_down


def _host(prefix: str) -> IPAddress | None:
    """The address of a host route (/32, /128), else None."""
    try:
        network = ipaddress.ip_network(prefix, strict=True)
    except ValueError:
        return None
    if network.prefixlen != network.max_prefixlen:
        return None
    return network.network_address


def _normal(peer: str) -> str:
    try:
        return str(ipaddress.ip_address(peer))
    except ValueError:
        return peer
