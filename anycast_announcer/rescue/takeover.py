"""Take-over: make conntrack agree with the sockets when rescue starts watching (pure).

Rescue asks conntrack which flows are ours. When its table is first installed, conntrack
may not have watched the host's connections (no rule used it) or may have stopped for a
while (rescue removed and installed again). Then three things can be wrong, and each is
fixed from the list of established sockets on the anycast addresses:

- a socket conntrack does not know: its mid-stream packets would look like someone
  else's and be sent away. It is *adopted*: entered as ESTABLISHED.
- an entry that matches a socket but missed part of the connection: its sequence window
  is stale and conntrack would call the next packets invalid (someone else's). It is
  *liberalized*: conntrack stops checking its windows, as it does for connections it picks
  up mid-stream itself. NAT, marks and labels of the entry are kept.
- an entry no socket matches: a connection that ended while conntrack was not watching.
  If the client reuses the port, the stale entry would make the new flow's packets
  invalid, or claim another server's flow as ours. It is *forgotten* (deleted).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from anycast_announcer.overlay import IPAddress

__all__ = ["CtEntry", "Flow", "TakeOver", "plan_take_over"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, order=True)
class Flow:
    """A TCP connection seen from this server: its anycast end and the client's."""

    local: IPAddress
    local_port: int
    remote: IPAddress
    remote_port: int


@dataclass(frozen=True, slots=True, order=True)
class CtEntry:
    """A TCP conntrack entry by its original-direction tuple."""

    source: IPAddress
    source_port: int
    destination: IPAddress
    destination_port: int

    def flow(self, prefixes: Iterable[IPNetwork]) -> Flow | None:
        """The entry as a flow of ours, whichever side started it; None if not ours."""
        nets = tuple(prefixes)
        if any(self.destination in net for net in nets):
            return Flow(self.destination, self.destination_port, self.source, self.source_port)
        if any(self.source in net for net in nets):
            return Flow(self.source, self.source_port, self.destination, self.destination_port)
        return None


@dataclass(frozen=True, slots=True)
class TakeOver:
    """What to change in conntrack."""

    adopt: tuple[Flow, ...]
    liberalize: tuple[CtEntry, ...]
    forget: tuple[CtEntry, ...]


def plan_take_over(
    entries: Iterable[CtEntry], sockets: Iterable[Flow], prefixes: Iterable[IPNetwork]
) -> TakeOver:
    """Reconcile conntrack's TCP ``entries`` with the established ``sockets``."""
    nets = tuple(prefixes)
    held = {flow for flow in sockets if any(flow.local in net for net in nets)}
    known: set[Flow] = set()
    liberalize: list[CtEntry] = []
    forget: list[CtEntry] = []
    for entry in entries:
        flow = entry.flow(nets)
        if flow is None:
            continue
        if flow in held:
            known.add(flow)
            liberalize.append(entry)
        else:
            forget.append(entry)
    return TakeOver(
        adopt=tuple(sorted(held - known, key=str)),
        liberalize=tuple(sorted(liberalize, key=str)),
        forget=tuple(sorted(forget, key=str)),
    )
