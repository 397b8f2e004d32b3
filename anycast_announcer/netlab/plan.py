"""Pure decisions about a lab: names, paths and when BGP counts as up.

:mod:`anycast_announcer.netlab.lab` does the I/O; everything it needs to decide
is computed here from the topology, a lab name and what it observed.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anycast_announcer.netlab.errors import TopologyError

__all__ = [
    "FRR_RUN_ROOT",
    "RUN_ROOT",
    "BgpWait",
    "PendingPeer",
    "bgp_peers",
    "frr_run_dir",
    "interface_addresses",
    "lab_run_dir",
    "namespace_name",
    "pending_peers",
    "validate_lab_name",
]

RUN_ROOT = Path("/run/anycast-netlab")
# FRR's compiled-in state directory; `-N NAME` makes it /var/run/frr/NAME.
FRR_RUN_ROOT = Path("/var/run/frr")
# Unix socket paths are limited to 108 bytes; /var/run/frr/<ns>/zserv.api must fit.
_MAX_NS_NAME = 80
_LAB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class BgpWait(enum.Enum):
    """Which BGP sessions ``deploy`` waits for."""

    NONE = "none"
    ROUTERS = "routers"  # neighbors whose address belongs to another FRR node
    ALL = "all"


@dataclass(frozen=True, slots=True)
class PendingPeer:
    """A neighbor ``deploy`` is still waiting for."""

    router: str
    peer: str
    state: str

    def __str__(self) -> str:
        return f"{self.router} -> {self.peer} ({self.state})"


def validate_lab_name(name: str) -> str:
    """Return ``name`` if it can be part of namespace and FRR pathspace names."""
    if not _LAB_NAME_RE.match(name):
        raise TopologyError(f"lab name {name!r} must be letters, digits, '-', '_' or '.'")
    return name


def namespace_name(lab: str, node: str) -> str:
    """The network namespace (and FRR pathspace) of a node, as containerlab names containers."""
    name = f"clab-{lab}-{node}"
    if len(name) > _MAX_NS_NAME:
        raise TopologyError(
            f"namespace name {name!r} is longer than {_MAX_NS_NAME} characters; "
            "use a shorter lab name"
        )
    return name


def lab_run_dir(lab: str, root: Path = RUN_ROOT) -> Path:
    """Directory holding the lab's state file, FRR configs and logs."""
    return root / lab


def frr_run_dir(namespace: str) -> Path:
    """FRR's pid and socket directory for the pathspace ``namespace``."""
    return FRR_RUN_ROOT / namespace


def bgp_peers(summary: Any) -> dict[str, str]:
    """Neighbor address -> state, from ``show bgp summary json`` (all address families)."""
    peers: dict[str, str] = {}
    if not isinstance(summary, Mapping):
        return peers
    for family in summary.values():
        if not isinstance(family, Mapping):
            continue
        family_peers = family.get("peers")
        if not isinstance(family_peers, Mapping):
            continue
        for address, info in family_peers.items():
            state = info.get("state", "unknown") if isinstance(info, Mapping) else "unknown"
            # A peer in several families is up only if it is up in all of them.
            if peers.get(address, "Established") == "Established":
                peers[address] = str(state)
    return peers


def pending_peers(
    router: str, summary: Any, wait: BgpWait, other_router_addresses: Iterable[str]
) -> list[PendingPeer]:
    """The neighbors of ``router`` that ``deploy`` must still wait for."""
    if wait is BgpWait.NONE:
        return []
    others = {_canonical(address) for address in other_router_addresses}
    pending = []
    for address, state in sorted(bgp_peers(summary).items()):
        if state == "Established":
            continue
        if wait is BgpWait.ALL or _canonical(address) in others:
            pending.append(PendingPeer(router=router, peer=address, state=state))
    return pending


def _canonical(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.split("%")[0]))
    except ValueError:
        return address  # an interface name (unnumbered BGP) compares as text


def interface_addresses(ip_json: Any) -> list[tuple[str, str]]:
    """(interface, address/prefix) pairs from ``ip -j addr``, without loopback and link-local."""
    result: list[tuple[str, str]] = []
    if not isinstance(ip_json, list):
        return result
    for link in ip_json:
        if not isinstance(link, Mapping):
            continue
        for info in link.get("addr_info", []) or []:
            if not isinstance(info, Mapping) or "local" not in info:
                continue
            address = ipaddress.ip_address(str(info["local"]))
            if address.is_loopback or address.is_link_local:
                continue
            result.append((str(link.get("ifname", "?")), f"{address}/{info.get('prefixlen')}"))
    return result
