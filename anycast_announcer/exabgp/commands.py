"""ExaBGP text-API commands for our routes, and the diff that decides which to send.

Diff, don't replay: the driver sends only what differs between the routes the policy
wants and the routes ExaBGP has acknowledged. After an ExaBGP restart nothing is
acknowledged, so the same function sends the whole set again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from anycast_announcer.routes import Route, RouteKey

__all__ = ["Command", "announce_command", "plan_commands", "withdraw_command"]


@dataclass(frozen=True, slots=True)
class Command:
    """One API line and what it does to the acknowledged set once ExaBGP says ``done``."""

    line: str
    key: RouteKey
    route: Route | None
    """The route now on the session, or None for a withdrawal."""


def announce_command(route: Route) -> str:
    """``neighbor P announce route X next-hop self ...`` for one route."""
    parts = [f"neighbor {route.peer} announce route {route.prefix} next-hop self"]
    if route.med is not None:
        parts.append(f"med {route.med}")
    if route.as_path:
        parts.append("as-path [ " + " ".join(str(asn) for asn in route.as_path) + " ]")
    if route.communities:
        parts.append("community [ " + " ".join(route.communities) + " ]")
    if route.large_communities:
        parts.append("large-community [ " + " ".join(route.large_communities) + " ]")
    if route.extended_communities:
        parts.append("extended-community [ " + " ".join(route.extended_communities) + " ]")
    return " ".join(parts)


def withdraw_command(key: RouteKey) -> str:
    """``neighbor P withdraw route X`` for one session/prefix."""
    return f"neighbor {key.peer} withdraw route {key.prefix} next-hop self"


def plan_commands(
    desired: Mapping[RouteKey, Route], acknowledged: Mapping[RouteKey, Route]
) -> list[Command]:
    """The commands that turn ``acknowledged`` into ``desired``: announcements first.

    Announcing before withdrawing means a change that moves traffic between prefixes
    never passes through a moment with neither announced.
    """
    commands = [
        Command(announce_command(route), key, route)
        for key, route in sorted(desired.items())
        if acknowledged.get(key) != route
    ]
    commands += [
        Command(withdraw_command(key), key, None)
        for key in sorted(acknowledged)
        if key not in desired
    ]
    return commands
