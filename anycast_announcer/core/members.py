"""The core's part of learnt rescue membership (pure): our member route, theirs in.

``SidecarCore`` delegates here when the config has ``rescue.membership``. This object
owns the learnt member set (``rescue.membership.Membership``) and whether our own data
path is installed, and answers two questions the core asks at every step: which member
routes to announce (ours, on every established session of the underlay's family, once
the data path is in), and whether the rescue plan must be applied again (the learnt
set changed). Member routes are not anycast prefixes: they never pass through the
prefix policy, ``allowed_prefixes``, the per-prefix status or the prefix metrics.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from anycast_announcer.config import Config
from anycast_announcer.core.logs import Logger
from anycast_announcer.rescue.membership import Membership, member_route_prefix
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import RescueMembershipStatus, RescueMemberStatus

__all__ = ["HostRoutesIn", "LearntMembers"]

Announced = tuple[tuple[str, tuple[str, ...]], ...]
"""(prefix, standard communities) of each route an UPDATE announced."""


class HostRoutesIn:
    """The host routes (/32, /128) each peer carries now, with their communities.

    Kept whatever the config says, so a reload that turns membership on (or changes its
    community) learns at once from what the sessions already carry, without restarting
    ExaBGP. Only host routes: member routes are host routes, and the rest of a leaf's
    table is no business of ours.
    """

    def __init__(self) -> None:
        self._routes: dict[str, dict[str, tuple[str, ...]]] = {}

    def update(self, peer: str, announced: Announced, withdrawn: tuple[str, ...]) -> None:
        """Apply one UPDATE of ``peer``."""
        table = self._routes.setdefault(peer, {})
        for prefix in withdrawn:
            table.pop(prefix, None)
        for prefix, communities in announced:
            if _is_host_route(prefix):
                table[prefix] = communities
            else:
                table.pop(prefix, None)

    def drop(self, peer: str) -> None:
        """``peer``'s session went down: its routes are gone."""
        self._routes.pop(peer, None)

    def replay(self) -> list[tuple[str, Announced]]:
        """Per peer, everything it carries, as one announcement."""
        return [(peer, tuple(table.items())) for peer, table in sorted(self._routes.items())]


class LearntMembers:
    """Learnt membership and our member route, for one configuration at a time."""

    def __init__(self, config: Config, logger: Logger) -> None:
        assert config.rescue is not None  # built only for rescue.membership
        assert config.rescue.membership is not None  # idem
        self._logger = logger
        self._settings = config.rescue.membership
        self._membership = Membership(self._settings, _peers(config))
        self._installed: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    @staticmethod
    def wanted(config: Config) -> bool:
        """Whether ``config`` learns its rescue members from BGP."""
        return config.rescue is not None and config.rescue.membership is not None

    def reconfigure(self, config: Config, now: float) -> bool:
        """A reload; whether the learnt member set changed."""
        assert config.rescue is not None  # only while wanted(config)
        assert config.rescue.membership is not None  # idem
        self._settings = config.rescue.membership
        return self._log(lambda: self._membership.reconfigure(self._settings, _peers(config), now))

    # -- inputs ------------------------------------------------------------------------

    def installed(self, member: str) -> bool:
        """Our data path is installed for ``member``; whether our member route changes."""
        address = ipaddress.ip_address(member)
        if address == self._installed:
            return False
        self._installed = address
        return True

    def inherit(self, addresses: Iterable[str], now: float) -> None:
        """Peers found installed at start: members on hold-down until routes confirm."""
        self._log(
            lambda: self._membership.inherit((ipaddress.ip_address(a) for a in addresses), now)
        )

    def received(
        self,
        peer: str,
        announced: Iterable[tuple[str, tuple[str, ...]]],
        withdrawn: Iterable[str],
        now: float,
    ) -> bool:
        """A peer's UPDATE; whether the learnt member set changed."""
        return self._log(lambda: self._membership.routes_received(peer, announced, withdrawn, now))

    def session_down(self, peer: str, now: float) -> bool:
        """A session went down; whether the learnt member set changed."""
        return self._log(lambda: self._membership.session_down(peer, now))

    def expire(self, now: float) -> bool:
        """Hold-downs that ended; whether the learnt member set changed."""
        return self._log(lambda: self._membership.expire(now))

    # -- answers -----------------------------------------------------------------------

    def learnt(self) -> tuple[str, ...]:
        """The learnt members (present and held down), sorted."""
        members = sorted(self._membership.members(), key=lambda a: (a.version, int(a)))
        return tuple(str(address) for address in members)

    def next_deadline(self) -> float | None:
        """When a hold-down ends next (monotonic)."""
        return self._membership.next_deadline()

    def routes(self, sessions_up: Iterable[str]) -> dict[RouteKey, Route]:
        """Our member route on every established session of the underlay's family."""
        address = self._installed
        prefix = member_route_prefix(self._settings, address) if address is not None else None
        if address is None or prefix is None:
            return {}
        routes = {}
        for peer in sessions_up:
            if ipaddress.ip_address(peer).version == address.version:
                route = Route(peer=peer, prefix=prefix, communities=(self._settings.community,))
                routes[route.key] = route
        return routes

    def status(self, now: float, announced: bool) -> RescueMembershipStatus:
        """What operators see in the rescue section of ``/status``."""
        return RescueMembershipStatus(
            community=self._settings.community,
            announced=announced,
            members=tuple(
                RescueMemberStatus(
                    address=view.address,
                    present=view.present,
                    held_for=None if view.leaves_at is None else max(0.0, view.leaves_at - now),
                )
                for view in self._membership.view()
            ),
            ignored=dict(sorted(self._membership.ignored.items())),
        )

    def _log(self, step: Callable[[], bool]) -> bool:
        """Run ``step`` (whether the member set changed); log when any member moved
        between present, held down and gone (a departure changes no data path at once)."""
        before = self._membership.view()
        changed = step()
        views = self._membership.view()
        if [(v.address, v.present) for v in views] != [(v.address, v.present) for v in before]:
            self._logger.info(
                "rescue_members_changed",
                present=[v.address for v in views if v.present],
                held_down=[v.address for v in views if not v.present],
            )
        return changed


def _is_host_route(prefix: str) -> bool:
    try:
        network = ipaddress.ip_network(prefix)
    except ValueError:
        return False
    return network.prefixlen == network.max_prefixlen


def _peers(config: Config) -> list[str]:
    return [str(peer.address) for peer in config.bgp.peers]
