"""What is installed, and the changes that make it what a plan wants (pure).

The kernel shell (``kernel``) reads the overlay devices over netlink and the tables with
``nft -j``, turns them into the values below, and performs the changes this module
computes. Nothing here touches the kernel, so every decision is unit-tested:

- **links**: a device that is missing, or whose VNI / port / local address differ (they
  cannot be changed in place), is (re)created; MAC, MTU and up state are set; addresses,
  neighbours and FDB entries are added and removed one by one; the device sysctls
  (``rp_filter``, IPv6 on, no autoconfiguration) are written where they differ.
- **tables**: an absent table is created whole. An installed one is updated in one
  atomic ``nft -f`` transaction that flushes every rule, deletes the chains, sets and
  counters the plan no longer has (or whose definition changed), empties the static sets
  (members, anycast prefixes) and declares the rest again: the flow sets a reconcile
  keeps (owners learnt, probation, orphans) keep their elements and the counters keep
  counting. Tables of families the plan no longer has are deleted. A set whose
  declaration changed is deleted and declared again, empty: that is how ``registered``
  (whose comment names the directory's bucket map) forgets registrations sent to a
  bucket's old directory member when the membership moves the bucket.
- **the netdev table** of the flow directory is written with the underlay family's
  table; its rule carries that table's marker, so one that was deleted or altered on its
  own is found and written back alone (or deleted, when the plan has no directory).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anycast_announcer.rescue.model import TABLE, Family, Overlay, RescuePlan
from anycast_announcer.rescue.render import (
    MARKER_PREFIX,
    REGISTERED,
    ChainShape,
    RenderedTable,
    SetShape,
    TableShape,
)

__all__ = [
    "DEVICE_SYSCTLS",
    "EGRESS_FAMILY",
    "InstalledOverlay",
    "InstalledTable",
    "LinkOp",
    "LinkOpKind",
    "egress_script",
    "forgets_registrations",
    "link_changes",
    "marker_mode",
    "parse_egress",
    "parse_table",
    "registrations_script",
    "removal_script",
    "table_script",
]

DEVICE_SYSCTLS: Mapping[str, str] = {
    # Loose reverse-path filtering: a rescued packet's source (the client) is routed via
    # the fabric, not the overlay. The effective value is max(all, device), so 2 keeps
    # strict hosts (all=1) working too, and it needs an address on the device.
    "ipv4/conf/{dev}/rp_filter": "2",
    "ipv6/conf/{dev}/disable_ipv6": "0",
    # No autoconfigured link-local address: the overlay addresses are ours alone.
    "ipv6/conf/{dev}/addr_gen_mode": "1",
    "ipv6/conf/{dev}/accept_ra": "0",
    "ipv6/conf/{dev}/accept_dad": "0",
}
"""Per-device sysctls (under /proc/sys/net); they vanish with the device."""


@dataclass(frozen=True, slots=True)
class InstalledOverlay:
    """A device found under an overlay's name."""

    name: str
    index: int
    kind: str
    vni: int | None
    port: int | None
    local: str | None
    mac: str
    mtu: int
    up: bool
    learning: bool
    udp_checksum: bool = True
    addresses: frozenset[str] = frozenset()
    neighbors: frozenset[tuple[str, str]] = frozenset()
    fdb: frozenset[tuple[str, str]] = frozenset()
    sysctls: Mapping[str, str] = field(default_factory=dict)


class LinkOpKind(enum.Enum):
    """One netlink (or sysctl) step."""

    DELETE_LINK = "delete_link"
    CREATE_LINK = "create_link"
    SET_LINK = "set_link"
    SET_SYSCTL = "set_sysctl"
    ADD_ADDRESS = "add_address"
    DEL_ADDRESS = "del_address"
    ADD_NEIGHBOR = "add_neighbor"
    DEL_NEIGHBOR = "del_neighbor"
    ADD_FDB = "add_fdb"
    DEL_FDB = "del_fdb"
    LINK_UP = "link_up"


@dataclass(frozen=True, slots=True)
class LinkOp:
    """A step on one overlay device; ``args`` depend on the kind (address, mac, ...)."""

    kind: LinkOpKind
    device: str
    args: tuple[str, ...] = ()
    overlay: Overlay | None = None

    def describe(self) -> str:
        """A short human line for logs and ``rescue install`` output."""
        return " ".join([self.kind.value, self.device, *self.args])


def _desired_addresses(overlay: Overlay) -> frozenset[str]:
    return frozenset({str(overlay.ipv4), str(overlay.ipv6)})


def _desired_neighbors(overlay: Overlay) -> frozenset[tuple[str, str]]:
    return frozenset((n.address, n.mac) for n in overlay.neighbors)


def _desired_fdb(overlay: Overlay) -> frozenset[tuple[str, str]]:
    return frozenset((e.mac, e.destination) for e in overlay.fdb)


def _must_recreate(found: InstalledOverlay, overlay: Overlay) -> bool:
    return (
        found.kind != "vxlan"
        or found.vni != overlay.vni
        or found.port != overlay.port
        or found.local != str(overlay.local)
        or found.learning
        or found.udp_checksum != overlay.udp_checksum
    )


def _sysctl_ops(overlay: Overlay, found: InstalledOverlay | None) -> list[LinkOp]:
    ops = []
    for template, value in DEVICE_SYSCTLS.items():
        path = template.format(dev=overlay.name)
        if found is None or found.sysctls.get(path) != value:
            ops.append(LinkOp(LinkOpKind.SET_SYSCTL, overlay.name, (path, value)))
    return ops


def _set_difference(
    kind_add: LinkOpKind,
    kind_del: LinkOpKind,
    device: str,
    have: Iterable[Any],
    want: Iterable[Any],
) -> list[LinkOp]:
    have_set, want_set = set(have), set(want)

    def args(item: Any) -> tuple[str, ...]:
        return tuple(item) if isinstance(item, tuple) else (str(item),)

    ops = [LinkOp(kind_del, device, args(item)) for item in sorted(have_set - want_set)]
    ops += [LinkOp(kind_add, device, args(item)) for item in sorted(want_set - have_set)]
    return ops


def _overlay_changes(overlay: Overlay, found: InstalledOverlay | None) -> list[LinkOp]:
    ops: list[LinkOp] = []
    if found is not None and _must_recreate(found, overlay):
        ops.append(LinkOp(LinkOpKind.DELETE_LINK, overlay.name))
        found = None
    if found is None:
        ops.append(LinkOp(LinkOpKind.CREATE_LINK, overlay.name, overlay=overlay))
    elif found.mac != overlay.mac or found.mtu != overlay.mtu:
        ops.append(LinkOp(LinkOpKind.SET_LINK, overlay.name, (overlay.mac, str(overlay.mtu))))
    # Sysctls (IPv6 autoconfiguration off) before the device goes up.
    ops += _sysctl_ops(overlay, found)
    if found is None or not found.up:
        ops.append(LinkOp(LinkOpKind.LINK_UP, overlay.name))
    empty: frozenset[Any] = frozenset()
    ops += _set_difference(
        LinkOpKind.ADD_ADDRESS,
        LinkOpKind.DEL_ADDRESS,
        overlay.name,
        found.addresses if found else empty,
        _desired_addresses(overlay),
    )
    ops += _set_difference(
        LinkOpKind.ADD_NEIGHBOR,
        LinkOpKind.DEL_NEIGHBOR,
        overlay.name,
        found.neighbors if found else empty,
        _desired_neighbors(overlay),
    )
    ops += _set_difference(
        LinkOpKind.ADD_FDB,
        LinkOpKind.DEL_FDB,
        overlay.name,
        found.fdb if found else empty,
        _desired_fdb(overlay),
    )
    return ops


def link_changes(
    installed: Mapping[str, InstalledOverlay], plan: RescuePlan | None
) -> tuple[LinkOp, ...]:
    """Steps from ``installed`` (devices by name) to the plan's overlays (None: none).

    Devices of ``installed`` the plan does not name (an overlay renamed in the config,
    or every device on removal) are deleted.
    """
    overlays = (plan.rescue, plan.feedback) if plan is not None else ()
    ops: list[LinkOp] = []
    wanted = {overlay.name for overlay in overlays}
    for name in sorted(installed):
        if name not in wanted:
            ops.append(LinkOp(LinkOpKind.DELETE_LINK, name))
    for overlay in overlays:
        ops += _overlay_changes(overlay, installed.get(overlay.name))
    return tuple(ops)


# -- nftables -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstalledTable:
    """One family's ``anycast_rescue`` table as ``nft -j list table`` shows it."""

    family: Family
    sets: Mapping[str, SetShape]
    chains: Mapping[str, ChainShape]
    counters: frozenset[str]
    marker: str | None

    @property
    def mode(self) -> str | None:
        """``full`` or ``warm`` from the marker, None without one."""
        return marker_mode(self.marker)


def marker_mode(marker: str | None) -> str | None:
    """``full`` or ``warm`` from a table's marker, None without one."""
    if marker is None or not marker.startswith(MARKER_PREFIX):
        return None
    parts = marker[len(MARKER_PREFIX) :].split()
    return parts[0] if parts else None


def _as_tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def _parse_set(body: Mapping[str, Any]) -> SetShape:
    flags = frozenset(str(f) for f in body.get("flags", [])) - {"dynamic"}
    timeout = body.get("timeout")
    size = body.get("size")
    comment = body.get("comment")
    return SetShape(
        name=str(body["name"]),
        key=_as_tuple(body["type"]),
        flags=flags,
        timeout=int(timeout) if timeout is not None else None,
        size=int(size) if size is not None else None,
        comment=str(comment) if comment is not None else None,
    )


def _parse_chain(body: Mapping[str, Any]) -> ChainShape:
    hook = body.get("hook")
    prio = body.get("prio")
    return ChainShape(
        name=str(body["name"]),
        hook=str(hook) if hook is not None else None,
        priority=int(prio) if prio is not None else None,
    )


def parse_table(family: Family, document: Mapping[str, Any]) -> InstalledTable:
    """An ``nft -j list table <family> anycast_rescue`` document, as values."""
    sets: dict[str, SetShape] = {}
    chains: dict[str, ChainShape] = {}
    counters: set[str] = set()
    marker: str | None = None
    for item in document.get("nftables", []):
        if "set" in item:
            parsed = _parse_set(item["set"])
            sets[parsed.name] = parsed
        elif "chain" in item:
            chain = _parse_chain(item["chain"])
            chains[chain.name] = chain
        elif "counter" in item:
            counters.add(str(item["counter"]["name"]))
        elif "rule" in item and item["rule"].get("chain") == "info":
            comment = item["rule"].get("comment")
            marker = str(comment) if comment is not None else None
    return InstalledTable(family, sets, chains, frozenset(counters), marker)


def table_script(desired: RenderedTable, installed: InstalledTable | None) -> str | None:
    """The ``nft -f`` text that turns ``installed`` into ``desired``; None when equal."""
    if installed is None:
        return desired.text
    if installed.marker == desired.marker:
        return None
    family, shape = desired.family.value, desired.shape
    lines = [f"flush table {family} {TABLE}"]
    wanted_chains = {chain.name: chain for chain in shape.chains}
    for name in sorted(installed.chains):
        if wanted_chains.get(name) != installed.chains[name]:
            lines.append(f"delete chain {family} {TABLE} {name}")
    wanted_sets = {s.name: s for s in shape.sets}
    for name in sorted(installed.sets):
        want = wanted_sets.get(name)
        if want is None or _declared_again(want, installed.sets[name]):
            lines.append(f"delete set {family} {TABLE} {name}")
        elif not want.dynamic:
            lines.append(f"flush set {family} {TABLE} {name}")
    for name in sorted(installed.counters - set(shape.counters)):
        lines.append(f"delete counter {family} {TABLE} {name}")
    return "\n".join(lines) + "\n" + desired.text


def forgets_registrations(desired: TableShape, installed: InstalledTable | None) -> bool:
    """Whether writing ``desired`` over ``installed`` empties a ``registered`` set that
    held registrations: it is declared differently (its comment names the bucket map,
    so a membership change that moved buckets), and both have one. A table written
    whole (absent before) or a plan without the directory has nothing to register again.
    """
    if installed is None or REGISTERED not in installed.sets:
        return False
    wanted = next((s for s in desired.sets if s.name == REGISTERED), None)
    return wanted is not None and _declared_again(wanted, installed.sets[REGISTERED])


def _declared_again(wanted: SetShape, installed: SetShape) -> bool:
    """Whether :func:`table_script` deletes ``installed`` and declares ``wanted`` in its
    place, empty (they differ in what must match for a set to be kept)."""
    return wanted.comparable() != installed.comparable()


def registrations_script(family: Family) -> str:
    """The ``nft -f`` text that empties ``family``'s ``registered`` set (and nothing
    else): owners register every flow again at its next packet."""
    return f"flush set {family.value} {TABLE} {REGISTERED}\n"


EGRESS_FAMILY = "netdev"
"""The family of the flow directory's egress table (``table netdev anycast_rescue``)."""


def parse_egress(document: Mapping[str, Any]) -> str:
    """The marker of an ``nft -j list table netdev anycast_rescue`` document: the comment
    of its ``egress`` rule; '' when it has none (altered, or written by an older
    version), which matches no plan."""
    for item in document.get("nftables", []):
        rule = item.get("rule")
        if rule is not None and rule.get("chain") == "egress" and "comment" in rule:
            return str(rule["comment"])
    return ""


def egress_script(desired: RenderedTable, installed: str | None) -> str | None:
    """The ``nft -f`` text that makes the netdev table what the underlay family's
    ``desired`` table wants, given the installed one's marker (None: absent); None when
    it already is. Only for when the underlay table itself is not being written (its
    text replaces the netdev table anyway)."""
    if desired.egress:
        return None if installed == desired.marker else desired.egress
    if installed is None:
        return None
    return f"delete table {EGRESS_FAMILY} {TABLE}\n"


def removal_script(families: Iterable[Family], *, egress: bool = False) -> str:
    """Delete the tables of ``families`` (one transaction); ``egress``: the flow
    directory's netdev table too, whether or not it exists (declared, then deleted)."""
    script = "".join(f"delete table {family.value} {TABLE}\n" for family in families)
    if egress:
        script += f"table {EGRESS_FAMILY} {TABLE} {{ }}\ndelete table {EGRESS_FAMILY} {TABLE}\n"
    return script
