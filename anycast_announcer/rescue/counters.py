"""The rescue counters, read from the tables' named counters (pure parsing).

Per peer (summed over both families' tables):

- ``forwarded``: packets this server sent to the peer over the overlay: the ones of flows
  learnt as the peer's (``forwarded_learnt``) plus one copy of every replicated packet;
- ``received``: rescued packets from the peer that a connection here accepted;
- ``refused``: rescued packets from the peer that no connection here holds (dropped);
- ``feedback_sent`` / ``feedback_received``: owner confirmations to / from the peer.

Globally: ``replicated`` (packets copied to every peer because no owner was known),
``orphans`` (packets handed to the local stack after probation, which resets them),
``icmp_relayed``, and what the overlays refused: VXLAN from a non-member or on an
interface not toward the fabric (``underlay_refused``) or an inner packet that is not for
us (``overlay_refused``). The copy budget: blind packets dropped by the aggregate budget
(``blind_limited``), by the per-source-prefix budget (``blind_source_limited``), or
because a flow set was full (``blind_refused``); feedback claiming a flow this server
never copied to that peer (``claims_refused``); ICMP errors not relayed or accepted for
being over a per-sender or per-peer budget (``icmp_limited``); and every VXLAN packet
this server sent to the group (``underlay_sent``, each replica counted).

The flow directory (docs/rescue.md): packets sent to a flow's directory member
(``dir_queries``) or left to the blind path by the query budget (``dir_limited``);
packets this server, as a flow's directory member, sent on to the registered owner
(``dir_forwarded``) or dropped for want of an entry (``dir_unknown``); registrations sent
(``dir_registered``), held back by the aggregate limit (``dir_register_limited``) and
recorded here (``dir_recorded``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DIRECTORY_COUNTERS",
    "PeerCounters",
    "RescueCounters",
    "Traffic",
    "parse_counters",
    "token_address",
]

DIRECTORY_COUNTERS = (
    "dir_queries",
    "dir_limited",
    "dir_forwarded",
    "dir_unknown",
    "dir_registered",
    "dir_register_limited",
    "dir_recorded",
)
"""The flow directory's counters (docs/rescue.md, *The flow directory*)."""

_PEER_KINDS = ("fwd", "rx", "bad", "fbtx", "fbrx")
_GLOBALS = (
    "replicated",
    "orphans",
    "icmp_relayed",
    "overlay_refused",
    "underlay_refused",
    "blind_limited",
    "blind_source_limited",
    "blind_refused",
    "claims_refused",
    "icmp_limited",
    "underlay_sent",
    *DIRECTORY_COUNTERS,
)


@dataclass(frozen=True, slots=True)
class Traffic:
    """Packets and bytes."""

    packets: int = 0
    bytes: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.packets + other.packets, self.bytes + other.bytes)

    def as_json(self) -> dict[str, int]:
        """``{"packets": n, "bytes": n}``."""
        return {"packets": self.packets, "bytes": self.bytes}


@dataclass(frozen=True, slots=True)
class PeerCounters:
    """What went to and came from one peer."""

    peer: str
    forwarded: Traffic
    forwarded_learnt: Traffic
    received: Traffic
    refused: Traffic
    feedback_sent: Traffic
    feedback_received: Traffic

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return {
            "peer": self.peer,
            "forwarded": self.forwarded.as_json(),
            "forwarded_learnt": self.forwarded_learnt.as_json(),
            "received": self.received.as_json(),
            "refused": self.refused.as_json(),
            "feedback_sent": self.feedback_sent.as_json(),
            "feedback_received": self.feedback_received.as_json(),
        }


@dataclass(frozen=True, slots=True)
class RescueCounters:
    """Every rescue counter of this server (zeros when nothing is installed)."""

    peers: tuple[PeerCounters, ...] = ()
    replicated: Traffic = field(default_factory=Traffic)
    orphans: Traffic = field(default_factory=Traffic)
    icmp_relayed: Traffic = field(default_factory=Traffic)
    overlay_refused: Traffic = field(default_factory=Traffic)
    underlay_refused: Traffic = field(default_factory=Traffic)
    blind_limited: Traffic = field(default_factory=Traffic)
    blind_source_limited: Traffic = field(default_factory=Traffic)
    blind_refused: Traffic = field(default_factory=Traffic)
    claims_refused: Traffic = field(default_factory=Traffic)
    icmp_limited: Traffic = field(default_factory=Traffic)
    underlay_sent: Traffic = field(default_factory=Traffic)
    dir_queries: Traffic = field(default_factory=Traffic)
    dir_limited: Traffic = field(default_factory=Traffic)
    dir_forwarded: Traffic = field(default_factory=Traffic)
    dir_unknown: Traffic = field(default_factory=Traffic)
    dir_registered: Traffic = field(default_factory=Traffic)
    dir_register_limited: Traffic = field(default_factory=Traffic)
    dir_recorded: Traffic = field(default_factory=Traffic)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (what ``rescue status --json`` prints)."""
        return {
            "peers": [peer.as_json() for peer in self.peers],
            "replicated": self.replicated.as_json(),
            "orphans": self.orphans.as_json(),
            "icmp_relayed": self.icmp_relayed.as_json(),
            "overlay_refused": self.overlay_refused.as_json(),
            "underlay_refused": self.underlay_refused.as_json(),
            **{name: getattr(self, name).as_json() for name in _GLOBALS[5:]},
        }


def token_address(token: str) -> str:
    """The member address an nft name fragment stands for (``10_2_1_2`` -> 10.2.1.2)."""
    if token.count("_") == 3 and "__" not in token and token.replace("_", "").isdigit():
        return token.replace("_", ".")
    return token.replace("_", ":")


def _counter_values(documents: Iterable[Mapping[str, Any]]) -> dict[str, Traffic]:
    totals: dict[str, Traffic] = {}
    for document in documents:
        for item in document.get("nftables", []):
            counter = item.get("counter")
            if counter is None:
                continue
            name = str(counter["name"])
            value = Traffic(int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
            totals[name] = totals.get(name, Traffic()) + value
    return totals


def parse_counters(documents: Iterable[Mapping[str, Any]]) -> RescueCounters:
    """Sum the counters of ``nft -j list counters table <family> anycast_rescue`` outputs."""
    totals = _counter_values(documents)
    tokens = sorted(
        {name.split("_", 1)[1] for name in totals if name.split("_", 1)[0] in _PEER_KINDS}
    )
    replicated = totals.get("replicated", Traffic())

    def get(kind: str, token: str) -> Traffic:
        return totals.get(f"{kind}_{token}", Traffic())

    peers = tuple(
        PeerCounters(
            peer=token_address(token),
            forwarded=get("fwd", token) + replicated,
            forwarded_learnt=get("fwd", token),
            received=get("rx", token),
            refused=get("bad", token),
            feedback_sent=get("fbtx", token),
            feedback_received=get("fbrx", token),
        )
        for token in tokens
    )
    return RescueCounters(peers, **{name: totals.get(name, Traffic()) for name in _GLOBALS})
