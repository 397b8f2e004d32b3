"""The kernel shell of flow rescue: read what is installed, apply a plan, remove it all.

Links, addresses, neighbours and FDB entries go through pyroute2; the tables through the
``nft`` command (``-j`` to read, ``-c -f`` to check, ``-f`` to apply, one atomic
transaction per family); device sysctls through /proc/sys. Every method blocks: from
asyncio, call them through ``asyncio.to_thread`` (or use :class:`AsyncRescueKernel`).

Ownership: our devices carry the interface alias ``anycast-announcer rescue``, so
``remove`` finds them without a config, and a device that merely has our name is never
touched. The tables are ``ip anycast_rescue`` and ``ip6 anycast_rescue``, and, with the
flow directory, ``netdev anycast_rescue`` (written with the underlay family's table,
carrying its marker, and checked and repaired on its own as well).

Apply, in order: the overlay devices (diffed step by step), then per family: a family
without a table gets a *warm* table first (conntrack on, nothing rescued), the sockets
already established on the anycast addresses are entered into conntrack (take-over:
without it, mid-stream packets of connections older than the table would look like
someone else's and be sent away), then the full table replaces it. A table found in warm
mode (a crash, or a kill, between the two) is treated like a missing one: the take-over
runs again. A *repair* (``apply(plan, warm=False)``: our table vanished under a running
data path, e.g. a host firewall's ``flush ruleset``) skips the warm table and its wait:
the full table goes back at once, then the take-over runs. A warm table would hand the
flows this server is rescuing for others to the local stack, which resets them; with the
full table, a local flow conntrack lost track of during the gap is at worst copied to
the peers until the take-over re-enters it, never reset. An installed table is updated
in place when its digest differs. Every table text is checked with ``nft -c`` first; a
first install that fails is rolled back, whatever failed (nft, netlink, the conntrack or
socket-diag socket, a timeout): each of those reaches the caller as :class:`RescueError`.

The reset guard (``guard``: a tc filter on each fabric interface) goes on after the
tables (their ``resets`` chain marks what it lets out) and comes off before them at
removal (without the tables it would drop every reset from an anycast address); it is
read back with ``tc -j`` and compared like a table, and a clsact qdisc left with no
filter at all is deleted, so removal still leaves the host as it was.
The process boundary (the ``nft`` runner, the netlink sockets, the socket list, the
sysctl tree) is made of fields, so the shell's unit tests can fake it. Nothing here changes a
host-wide sysctl, so removal (tables and devices deleted) leaves the host as it was,
apart from conntrack entries, which expire on their own.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from pyroute2 import DiagSocket, IPRoute, NFCTSocket
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from anycast_announcer.config import RescueConfig
from anycast_announcer.connections import unmapped
from anycast_announcer.overlay import IPAddress
from anycast_announcer.rescue.counters import RescueCounters, parse_counters
from anycast_announcer.rescue.diff import (
    DEVICE_SYSCTLS,
    EGRESS_FAMILY,
    InstalledOverlay,
    InstalledTable,
    LinkOp,
    LinkOpKind,
    egress_script,
    forgets_registrations,
    link_changes,
    marker_mode,
    parse_egress,
    parse_table,
    registrations_script,
    removal_script,
    table_script,
)
from anycast_announcer.rescue.guard import GUARD_PREFERENCE, bytecode, guard_program
from anycast_announcer.rescue.model import TABLE, Family, Overlay, RescuePlan
from anycast_announcer.rescue.render import REGISTERED, RenderMode, render_table, table_shape
from anycast_announcer.rescue.takeover import CtEntry, Flow, TakeOver, plan_take_over

__all__ = [
    "ALIAS",
    "ApplyReport",
    "AsyncRescueKernel",
    "HostFacts",
    "Installed",
    "RemoveReport",
    "RescueError",
    "RescueKernel",
    "host_facts",
]

log = structlog.get_logger(__name__)

ALIAS = "anycast-announcer rescue"
SYSCTL_ROOT = Path("/proc/sys/net")
_NUD_PERMANENT = 0x80
# TCP states as sock_diag numbers them (include/net/tcp_states.h). Held: the peer may
# still send, so the flow is ours. TIME_WAIT lingers (see ``takeover``).
_TCP_HELD_STATES = (1, 3, 4, 5, 8, 9, 11)  # ESTABLISHED SYN_RECV FIN_WAIT1/2 CLOSE_WAIT
# LAST_ACK CLOSING
_TCP_TIME_WAIT = 6
# conntrack: IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED (ctnetlink refuses a new entry
# whose status lacks CONFIRMED with EBUSY); TCP state ESTABLISHED; "be liberal" about
# windows in both directions, as conntrack does itself for connections it picks up
# mid-stream (it never saw the window scale).
_CT_STATUS = 0x2 | 0x4 | 0x8
_CT_TCP_ESTABLISHED = 3
_CT_BE_LIBERAL = 0x08


class RescueError(Exception):
    """The data path could not be read, installed or removed; the message says why."""


_ENVIRONMENT_ERRORS = (NetlinkError, OSError, subprocess.SubprocessError, json.JSONDecodeError)
"""What the host can throw at the shell (netlink, sockets, nft timeouts, garbled output)."""


@contextmanager
def _reported(what: str) -> Iterator[None]:
    """Turn an error of the host into a RescueError naming ``what`` was being done."""
    try:
        yield
    except RescueError:
        raise
    except _ENVIRONMENT_ERRORS as exc:
        raise RescueError(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the plan needs from the host."""

    local_address: IPAddress
    underlay_mtu: int
    mtu_source: str
    """Where the MTU came from: ``config`` or the interfaces routing to the peers."""
    fabric_interfaces: tuple[str, ...] = ()
    """The interfaces this host routes the other members through."""


@dataclass(frozen=True, slots=True)
class Installed:
    """The rescue state found in the kernel."""

    overlays: Mapping[str, InstalledOverlay]
    tables: Mapping[Family, InstalledTable]
    guard: Mapping[str, str] = field(default_factory=dict)
    """The reset guard's program (tc bytecode) on each interface that has it."""
    egress: str | None = None
    """The flow directory's netdev table: its marker ('' unmarked), None when absent."""

    @property
    def empty(self) -> bool:
        """Nothing of ours is installed."""
        return not self.overlays and not self.tables and not self.guard and self.egress is None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready summary for ``rescue status``."""
        return {
            "devices": {
                name: {
                    "index": o.index,
                    "vni": o.vni,
                    "port": o.port,
                    "local": o.local,
                    "mac": o.mac,
                    "mtu": o.mtu,
                    "up": o.up,
                    "peers": sorted({dst for _, dst in o.fdb}),
                }
                for name, o in sorted(self.overlays.items())
            },
            "tables": {
                **{
                    family.value: {"mode": table.mode, "marker": table.marker}
                    for family, table in sorted(self.tables.items(), key=lambda i: i[0].value)
                },
                **(
                    {EGRESS_FAMILY: {"mode": marker_mode(self.egress), "marker": self.egress}}
                    if self.egress is not None
                    else {}
                ),
            },
            "reset_guard": sorted(self.guard),
        }


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What ``apply`` changed."""

    link_steps: tuple[str, ...] = ()
    tables_written: tuple[str, ...] = ()
    tables_deleted: tuple[str, ...] = ()
    took_over: tuple[str, ...] = ()
    adopted: int = 0
    """Established sockets conntrack did not know, entered at take-over."""
    liberalized: int = 0
    """Conntrack entries of established sockets told to stop checking windows."""
    forgotten: int = 0
    """Conntrack entries no socket matched, deleted at take-over."""
    registrations_forgotten: tuple[str, ...] = ()
    """Families whose ``registered`` set this apply declared again, empty (the bucket
    map changed): owners register again at once, and once more after
    ``reregister_after`` (``rescue.reregistration``)."""

    @property
    def changed(self) -> bool:
        """Whether anything was changed at all."""
        return bool(self.link_steps or self.tables_written or self.tables_deleted)


@dataclass(frozen=True, slots=True)
class RemoveReport:
    """What ``remove`` deleted."""

    tables: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    guard: tuple[str, ...] = ()
    """Interfaces the reset guard was taken off."""


# -- host facts --------------------------------------------------------------------------------


def _local_addresses(ipr: Any) -> set[IPAddress]:
    found: set[IPAddress] = set()
    for message in ipr.get_addr():
        address = message.get_attr("IFA_ADDRESS")
        if address is not None:
            found.add(ipaddress.ip_address(address))
    return found


_MAIN_TABLE = 254
_RTN_UNICAST = 1


def _route_interfaces(routes: Sequence[Any], destination: IPAddress) -> set[int]:
    """Every interface of the main table's longest match for ``destination``, all paths
    of a multipath route included (``route get`` names only the path it picked, and a
    dual-homed server receives a peer's packets on either)."""
    best, found = -1, set()
    for route in routes:
        if route["type"] != _RTN_UNICAST:
            continue
        length = int(route["dst_len"])
        dst = route.get_attr("RTA_DST")
        if dst is not None and destination not in ipaddress.ip_network(
            f"{dst}/{length}", strict=False
        ):
            continue  # no RTA_DST: a default route, which contains everything
        oifs = {int(hop["oif"]) for hop in route.get_attr("RTA_MULTIPATH") or ()}
        if route.get_attr("RTA_OIF"):
            oifs.add(int(route.get_attr("RTA_OIF")))
        if length > best:
            best, found = length, oifs
        elif length == best:
            found |= oifs
    return found


def _route_path(
    ipr: Any, table: Sequence[Any], links: Mapping[int, tuple[str, int]], destination: IPAddress
) -> tuple[int | None, set[str]]:
    """The MTU toward ``destination`` and the interfaces its route may leave by
    (``table``: the main routing table of its family; ``links``: index -> name, MTU)."""
    try:
        routes = ipr.route("get", dst=str(destination))
        indexes = _route_interfaces(table, destination)
    except NetlinkError:
        return None, set()
    if not routes:
        return None, set()
    oif = routes[0].get_attr("RTA_OIF")
    if oif:
        indexes.add(int(oif))
    names = {links[index][0] for index in indexes if index in links}
    metrics = routes[0].get_attr("RTA_METRICS")
    if metrics is not None and metrics.get_attr("RTAX_MTU"):
        return int(metrics.get_attr("RTAX_MTU")), names
    return (links[int(oif)][1] if oif and int(oif) in links else None), names


def host_facts(settings: RescueConfig) -> HostFacts:
    """This server's member address and the underlay MTU (blocking netlink).

    RescueError when neither the config nor the host says which member this is.
    """
    with _reported("reading the host's addresses and routes"):
        return _host_facts(settings)


def _host_facts(settings: RescueConfig) -> HostFacts:
    with IPRoute() as ipr:
        if settings.local_address is not None:
            local: IPAddress = settings.local_address
        else:
            local = _local_member(settings, _local_addresses(ipr))
        family = socket.AF_INET if local.version == 4 else socket.AF_INET6
        try:
            table = list(ipr.get_routes(family=family, table=_MAIN_TABLE))
        except NetlinkError:
            table = []
        links = {
            int(link["index"]): (str(link.get_attr("IFLA_IFNAME")), int(link.get_attr("IFLA_MTU")))
            for link in ipr.get_links()
        }
        paths = [_route_path(ipr, table, links, peer) for peer in _underlay_probes(settings, local)]
    mtus = [mtu for mtu, _ in paths if mtu is not None]
    # A peer reached through loopback (a lab whose members share a host) says nothing.
    interfaces = tuple(sorted({name for _, names in paths for name in names} - {"lo"}))
    if settings.underlay_mtu is not None:
        return HostFacts(local, settings.underlay_mtu, "config", interfaces)
    if not mtus:
        return HostFacts(local, 1500, "default (no route to any peer)", interfaces)
    return HostFacts(local, min(mtus), "interfaces routing to the peers", interfaces)


_BATCHED = {
    LinkOpKind.ADD_NEIGHBOR: ("ip", "neigh replace {0} lladdr {1} dev {dev} nud permanent"),
    LinkOpKind.DEL_NEIGHBOR: ("ip", "neigh del {0} dev {dev}"),
    LinkOpKind.ADD_FDB: ("bridge", "fdb append {0} dev {dev} dst {1}"),
    LinkOpKind.DEL_FDB: ("bridge", "fdb del {0} dev {dev} dst {1}"),
}


_DELETIONS = frozenset({LinkOpKind.DEL_NEIGHBOR, LinkOpKind.DEL_FDB})
"""Steps whose target may already be gone (ENOENT then means done)."""


def _underlay_probes(settings: RescueConfig, local: IPAddress) -> list[IPAddress]:
    """Addresses whose routes say which interfaces face the fabric and their MTU: the
    other listed members and, with learnt membership (peers not known yet), a host
    inside each underlay prefix."""
    probes: list[IPAddress] = [peer for peer in settings.members if peer != local]
    if settings.membership is not None:
        for network in settings.membership.underlay_prefixes:
            # The first host of the subnet (the network address of a /31 or /32).
            inside = ipaddress.ip_address(
                int(network.network_address) + (1 if network.num_addresses > 2 else 0)
            )
            if inside != local:
                probes.append(inside)
    return probes


def _batch_line(op: LinkOp) -> str:
    return _BATCHED[op.kind][1].format(*op.args, dev=op.device)


def _local_member(settings: RescueConfig, local_addresses: set[IPAddress]) -> IPAddress:
    """This server's member address: a listed member, or (membership) one in the underlay."""
    if settings.membership is not None:
        networks = settings.membership.underlay_prefixes
        candidates = {
            a for a in local_addresses if any(a.version == n.version and a in n for n in networks)
        }
        where = "rescue.membership.underlay_prefixes"
    else:
        candidates = local_addresses & set(settings.members)
        where = "rescue.members"
    mine = sorted(candidates, key=str)
    if len(mine) != 1:
        what = "none" if not mine else ", ".join(map(str, mine))
        raise RescueError(
            f"rescue.local_address: not set, and {what} of {where} is configured on this "
            "host; set it"
        )
    return mine[0]


# -- reading -----------------------------------------------------------------------------------


def _sysctl_read(path: str) -> str | None:
    try:
        return (SYSCTL_ROOT / path).read_text().strip()
    except OSError:
        return None


def _overlay_from(ipr: Any, link: Any) -> InstalledOverlay:
    index = int(link["index"])
    name = str(link.get_attr("IFLA_IFNAME"))
    info = link.get_attr("IFLA_LINKINFO")
    kind = str(info.get_attr("IFLA_INFO_KIND")) if info is not None else ""
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    vni = port = local = None
    learning, checksum = False, True
    if kind == "vxlan" and data is not None:
        vni = data.get_attr("IFLA_VXLAN_ID")
        port = data.get_attr("IFLA_VXLAN_PORT")
        local = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")
        learning = bool(data.get_attr("IFLA_VXLAN_LEARNING"))
        checksum = bool(data.get_attr("IFLA_VXLAN_UDP_CSUM"))
    addresses = frozenset(
        str(ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"))
        for a in ipr.get_addr(index=index)
    )
    neighbors = frozenset(
        (str(ipaddress.ip_address(n.get_attr("NDA_DST"))), str(n.get_attr("NDA_LLADDR")))
        for n in ipr.get_neighbours(ifindex=index)
        if n["state"] & _NUD_PERMANENT and n.get_attr("NDA_LLADDR")
    )
    fdb = frozenset(
        (str(f.get_attr("NDA_LLADDR")), str(ipaddress.ip_address(f.get_attr("NDA_DST"))))
        for f in ipr.fdb("dump", ifindex=index)
        if f["ifindex"] == index and f.get_attr("NDA_DST")
    )
    sysctls = {}
    for template in DEVICE_SYSCTLS:
        path = template.format(dev=name)
        value = _sysctl_read(path)
        if value is not None:
            sysctls[path] = value
    return InstalledOverlay(
        name=name,
        index=index,
        kind=kind,
        vni=int(vni) if vni is not None else None,
        port=int(port) if port is not None else None,
        local=str(local) if local is not None else None,
        mac=str(link.get_attr("IFLA_ADDRESS")),
        mtu=int(link.get_attr("IFLA_MTU")),
        up=bool(link["flags"] & 1),
        learning=learning,
        udp_checksum=checksum,
        addresses=addresses,
        neighbors=neighbors,
        fdb=fdb,
        sysctls=sysctls,
    )


def host_sockets(family: Family) -> tuple[list[Flow], list[Flow]]:
    """The host's TCP sockets of ``family`` as flows (local end first): the held ones
    and the TIME_WAIT ones (see ``takeover``).

    IPv4 connections accepted by a dual-stack IPv6 socket show up as IPv4-mapped IPv6
    addresses: they are IPv4 flows to conntrack, so they are returned unmapped.
    """
    held: list[Flow] = []
    lingering: list[Flow] = []
    mask = sum(1 << state for state in (*_TCP_HELD_STATES, _TCP_TIME_WAIT))
    with DiagSocket() as diag:
        diag.bind()
        for af in (socket.AF_INET, socket.AF_INET6):
            for message in diag.get_sock_stats(family=af, states=mask):
                local = unmapped(ipaddress.ip_address(message.get("idiag_src")))
                remote = unmapped(ipaddress.ip_address(message.get("idiag_dst")))
                if local.version == family.version:
                    lport, rport = int(message.get("idiag_sport")), int(message.get("idiag_dport"))
                    flow = Flow(local, lport, remote, rport)
                    waiting = message.get("idiag_state") == _TCP_TIME_WAIT
                    (lingering if waiting else held).append(flow)
    return held, lingering


def _conntrack_socket(af: int) -> Any:
    return NFCTSocket(nfgen_family=af)


def _ct_entries(conntrack: Any, family: Family) -> list[CtEntry]:
    """Conntrack's TCP entries of ``family`` (original-direction tuples)."""
    src, dst = (
        ("CTA_IP_V4_SRC", "CTA_IP_V4_DST")
        if family is Family.IPV4
        else (
            "CTA_IP_V6_SRC",
            "CTA_IP_V6_DST",
        )
    )
    entries = []
    for message in conntrack.dump():
        orig = message.get_attr("CTA_TUPLE_ORIG")
        ip, proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
        if proto is None or proto.get_attr("CTA_PROTO_NUM") != socket.IPPROTO_TCP:
            continue
        entries.append(
            CtEntry(
                ipaddress.ip_address(ip.get_attr(src)),
                int(proto.get_attr("CTA_PROTO_SRC_PORT")),
                ipaddress.ip_address(ip.get_attr(dst)),
                int(proto.get_attr("CTA_PROTO_DST_PORT")),
            )
        )
    return entries


def _tuple(entry: CtEntry) -> NFCTAttrTuple:
    return NFCTAttrTuple(
        family=socket.AF_INET if entry.source.version == 4 else socket.AF_INET6,
        saddr=str(entry.source),
        daddr=str(entry.destination),
        proto=socket.IPPROTO_TCP,
        sport=entry.source_port,
        dport=entry.destination_port,
    )


def _liberal_protoinfo(state: int | None = None) -> dict[str, Any]:
    flags = {"value": (_CT_BE_LIBERAL, _CT_BE_LIBERAL)}
    attrs: list[list[Any]] = []
    if state is not None:
        attrs.append(["CTA_PROTOINFO_TCP_STATE", state])
    attrs += [
        ["CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", flags],
        ["CTA_PROTOINFO_TCP_FLAGS_REPLY", flags],
    ]
    return {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": attrs}]]}


@dataclass
class RescueKernel:
    """Reads, applies and removes the rescue data path of this network namespace."""

    nft: str = "nft"
    _sleep: Any = field(default=time.sleep, repr=False)
    # The process boundary, replaced by fakes in the shell's unit tests.
    run: Callable[..., subprocess.CompletedProcess[str]] = field(default=subprocess.run, repr=False)
    iproute: Callable[[], Any] = field(default=IPRoute, repr=False)
    conntrack: Callable[[int], Any] = field(default=_conntrack_socket, repr=False)
    sockets: Callable[[Family], tuple[list[Flow], list[Flow]]] = field(
        default=host_sockets, repr=False
    )
    sysctl_root: Path = SYSCTL_ROOT

    # -- nft -----------------------------------------------------------------------------

    def _nft(self, args: Sequence[str], script: str | None = None) -> str:
        result = self.run(
            [self.nft, *args],
            input=script,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise RescueError(f"nft {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def _nft_json(self, args: Sequence[str]) -> dict[str, Any] | None:
        result = self.run(
            [self.nft, "-j", *args], capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode != 0:
            if "No such file or directory" in result.stderr:
                return None
            raise RescueError(f"nft -j {' '.join(args)}: {result.stderr.strip()}")
        document: dict[str, Any] = json.loads(result.stdout or "{}")
        return document

    def _read_tables(self) -> dict[Family, InstalledTable]:
        tables = {}
        for family in Family:
            document = self._nft_json(["list", "table", family.value, TABLE])
            if document is not None:
                tables[family] = parse_table(family, document)
        return tables

    def _read_egress(self) -> str | None:
        document = self._nft_json(["list", "table", EGRESS_FAMILY, TABLE])
        return parse_egress(document) if document is not None else None

    def _write(self, script: str) -> None:
        # Check the whole transaction first, so a rejected one leaves no trace.
        self._nft(["-c", "-f", "-"], script)
        self._nft(["-f", "-"], script)

    # -- links ---------------------------------------------------------------------------

    def _read_overlays(self, ipr: Any, names: Iterable[str]) -> dict[str, InstalledOverlay]:
        wanted = set(names)
        found = {}
        for link in ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME"))
            ours = link.get_attr("IFLA_IFALIAS") == ALIAS
            if name in wanted and not ours:
                raise RescueError(
                    f"interface {name} exists and was not made by anycast-announcer; "
                    "remove it or choose other rescue.device / rescue.feedback_device names"
                )
            if ours:
                found[name] = _overlay_from(ipr, link)
        return found

    def _index(self, ipr: Any, name: str) -> int:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise RescueError(f"interface {name} disappeared")
        return int(found[0])

    def _create(self, ipr: Any, overlay: Overlay) -> None:
        local = "vxlan_local" if overlay.local.version == 4 else "vxlan_local6"
        ipr.link(
            "add",
            ifname=overlay.name,
            kind="vxlan",
            vxlan_id=overlay.vni,
            vxlan_port=overlay.port,
            vxlan_learning=0,
            vxlan_udp_csum=int(overlay.udp_checksum),
            **{local: str(overlay.local)},
        )
        index = self._index(ipr, overlay.name)
        ipr.link("set", index=index, address=overlay.mac, mtu=overlay.mtu, ifalias=ALIAS)

    def _set_link(self, ipr: Any, index: int, mac: str, mtu: int) -> None:
        ipr.link("set", index=index, state="down")
        ipr.link("set", index=index, address=mac, mtu=mtu)
        ipr.link("set", index=index, state="up")

    def _step(self, ipr: Any, op: LinkOp) -> None:
        kind = op.kind
        if kind is LinkOpKind.CREATE_LINK:
            assert op.overlay is not None
            self._create(ipr, op.overlay)
            return
        if kind is LinkOpKind.SET_SYSCTL:
            (self.sysctl_root / op.args[0]).write_text(op.args[1])
            return
        index = self._index(ipr, op.device)
        if kind is LinkOpKind.DELETE_LINK:
            ipr.link("del", index=index)
        elif kind is LinkOpKind.SET_LINK:
            self._set_link(ipr, index, op.args[0], int(op.args[1]))
        elif kind is LinkOpKind.LINK_UP:
            ipr.link("set", index=index, state="up")
        elif kind in (LinkOpKind.ADD_ADDRESS, LinkOpKind.DEL_ADDRESS):
            interface = ipaddress.ip_interface(op.args[0])
            command = "add" if kind is LinkOpKind.ADD_ADDRESS else "del"
            ipr.addr(
                command,
                index=index,
                address=str(interface.ip),
                prefixlen=interface.network.prefixlen,
            )

    def _run_steps(self, ipr: Any, ops: Iterable[LinkOp]) -> list[str]:
        done = []
        batch: list[LinkOp] = []
        for op in ops:
            if op.kind in _BATCHED:
                batch.append(op)
                continue
            done += self._run_batch(batch)
            batch = []
            try:
                self._step(ipr, op)
            except NetlinkError as exc:
                # Deleting a neighbour or FDB entry that is gone already reached the goal:
                # removing an overlay address (a member's position moved when the group
                # changed) takes the neighbours of its subnet with it.
                gone = exc.code == errno.ENOENT and op.kind in _DELETIONS
                if not gone:
                    raise RescueError(f"{op.describe()}: {exc}") from None
            except OSError as exc:
                raise RescueError(f"{op.describe()}: {exc}") from None
            done.append(op.describe())
            log.debug("rescue_link_step", step=op.describe())
        return done + self._run_batch(batch)

    def _run_batch(self, ops: list[LinkOp]) -> list[str]:
        """Neighbour and FDB steps through ``ip -batch`` / ``bridge -batch``: a large group
        has thousands (4 neighbours and 3 FDB entries per peer), and pyroute2 encodes
        each message in Python (about 5 ms each: 50 s for 1,000 members)."""
        # Deletions first (a changed entry is a deletion and an addition of the same key),
        # each tool in one process. An entry already gone is what a deletion wants: the
        # kernel drops neighbours with the address they were reached through.
        for deleting in (True, False):
            for tool in ("ip", "bridge"):
                lines = [
                    _batch_line(op)
                    for op in ops
                    if _BATCHED[op.kind][0] == tool and (op.kind in _DELETIONS) == deleting
                ]
                if lines:
                    self._batch(tool, lines, tolerate_missing=deleting)
        return [op.describe() for op in ops]

    def _batch(self, tool: str, lines: list[str], *, tolerate_missing: bool) -> None:
        result = self.run(
            [tool, *(["-force"] if tolerate_missing else []), "-batch", "-"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode == 0:
            return
        errors = [
            line
            for line in result.stderr.splitlines()
            if line.strip() and not line.startswith("Command failed")
        ]
        if tolerate_missing and all("No such file or directory" in e for e in errors):
            return
        raise RescueError(f"{tool} -batch: {result.stderr.strip()}")

    # -- reset guard (tc) -----------------------------------------------------------------

    def _tc(self, args: Sequence[str], *, missing_ok: bool = False) -> str:
        result = self.run(["tc", *args], capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            gone = "No such file" in result.stderr or "Cannot find" in result.stderr
            if missing_ok and gone:
                return ""
            raise RescueError(f"tc {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def _guard_wanted(self, plan: RescuePlan) -> dict[str, str]:
        """The guard's bytecode on each fabric interface (none without a mark bit)."""
        if not plan.reset_guard_mark or not plan.prefixes or not plan.fabric_interfaces:
            return {}
        try:
            program = bytecode(guard_program(plan.prefixes, plan.reset_guard_mark))
        except ValueError as exc:
            raise RescueError(str(exc)) from exc
        return dict.fromkeys(plan.fabric_interfaces, program)

    def _read_guard(self) -> dict[str, str]:
        """Our filter (preference GUARD_PREFERENCE, clsact egress) on every interface."""
        qdiscs = json.loads(self._tc(["-j", "qdisc", "show"]) or "[]")
        found = {}
        for device in sorted({q["dev"] for q in qdiscs if q.get("kind") == "clsact"}):
            shown = self._tc(
                ["-j", "filter", "show", "dev", device, "egress", "pref", str(GUARD_PREFERENCE)],
                missing_ok=True,
            )
            for entry in json.loads(shown or "[]"):
                code = entry.get("options", {}).get("bytecode")
                if entry.get("kind") == "bpf" and code:
                    insns = ",".join(
                        f"{i['code']} {i['jt']} {i['jf']} {i['k']}" for i in code["insns"]
                    )
                    found[device] = f"{code['length']},{insns}"
        return found

    def _apply_guard(self, plan: RescuePlan, installed: Mapping[str, str]) -> list[str]:
        wanted = self._guard_wanted(plan)
        steps = []
        for device, program in sorted(wanted.items()):
            if installed.get(device) == program:
                continue
            self._tc(["qdisc", "replace", "dev", device, "clsact"])
            where = ["dev", device, "egress", "pref", str(GUARD_PREFERENCE), "handle", "1"]
            filter_ = ["protocol", "all", "bpf", "da", "bytecode", program]
            self._tc(["filter", "replace", *where, *filter_])
            steps.append(f"reset guard on {device}")
        for device in sorted(set(installed) - set(wanted)):
            self._unguard(device)
            steps.append(f"reset guard off {device}")
        return steps

    def _unguard(self, device: str) -> None:
        """Delete our filter, and the clsact qdisc if nothing else uses it."""
        pref = str(GUARD_PREFERENCE)
        self._tc(["filter", "del", "dev", device, "egress", "pref", pref], missing_ok=True)
        others = [
            self._tc(["filter", "show", "dev", device, hook], missing_ok=True).strip()
            for hook in ("ingress", "egress")
        ]
        if not any(others):
            self._tc(["qdisc", "del", "dev", device, "clsact"], missing_ok=True)

    # -- take-over -----------------------------------------------------------------------

    def _take_over(self, family: Family, plan: RescuePlan) -> TakeOver:
        """Reconcile conntrack with the established sockets (see ``takeover``)."""
        af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
        held, lingering = self.sockets(family)
        with self.conntrack(af) as conntrack:
            todo = plan_take_over(
                _ct_entries(conntrack, family), held, plan.prefixes_of(family), lingering
            )
            for entry in todo.forget:
                self._ct(conntrack, "del", entry, tuple_orig=_tuple(entry))
            for entry in todo.liberalize:
                self._ct(
                    conntrack,
                    "set",
                    entry,
                    tuple_orig=_tuple(entry),
                    protoinfo=_liberal_protoinfo(),
                )
            timeout = int(_sysctl_read("netfilter/nf_conntrack_tcp_timeout_established") or 432000)
            for flow in todo.adopt:
                entry = CtEntry(flow.remote, flow.remote_port, flow.local, flow.local_port)
                reply = CtEntry(flow.local, flow.local_port, flow.remote, flow.remote_port)
                self._ct(
                    conntrack,
                    "add",
                    entry,
                    timeout=timeout,
                    status=_CT_STATUS,
                    protoinfo=_liberal_protoinfo(_CT_TCP_ESTABLISHED),
                    tuple_orig=_tuple(entry),
                    tuple_reply=_tuple(reply),
                )
        log.info(
            "rescue_took_over",
            family=family.value,
            adopted=len(todo.adopt),
            liberalized=len(todo.liberalize),
            forgotten=len(todo.forget),
        )
        return todo

    @staticmethod
    def _ct(conntrack: Any, command: str, entry: CtEntry, **attrs: Any) -> None:
        try:
            conntrack.entry(command, **attrs)
        except NetlinkError as exc:
            # The flow ended, or a packet made conntrack pick it up, in the meantime.
            if exc.code not in (errno.EEXIST, errno.ENOENT):
                raise RescueError(f"conntrack {command} {entry}: {exc}") from None

    # -- the API -------------------------------------------------------------------------

    def read_installed(self, names: Iterable[str] = ()) -> Installed:
        """Our devices and tables as they are now (``names``: also fail on foreign ones)."""
        with _reported("reading the rescue state"), self.iproute() as ipr:
            overlays = self._read_overlays(ipr, names)
        with _reported("reading the rescue tables"):
            tables, egress = self._read_tables(), self._read_egress()
        with _reported("reading the reset guard"):
            return Installed(overlays, tables, self._read_guard(), egress)

    def device_indexes(self, plan: RescuePlan) -> dict[str, int]:
        """The interface index of each overlay device (dup rules are bound to them)."""
        with _reported("reading the overlay devices"), self.iproute() as ipr:
            return {
                overlay.name: self._index(ipr, overlay.name)
                for overlay in (plan.rescue, plan.feedback)
            }

    def in_sync(self, plan: RescuePlan, installed: Installed | None = None) -> bool:
        """Whether the devices and tables are exactly what ``plan`` renders."""
        installed = installed if installed is not None else self.read_installed()
        if link_changes(installed.overlays, plan):
            return False
        if set(installed.tables) != set(plan.families):
            return False
        if installed.guard != self._guard_wanted(plan):
            return False
        indexes = self.device_indexes(plan)
        rendered = {f: render_table(plan, f, device_indexes=indexes) for f in plan.families}
        if egress_script(rendered[plan.underlay], installed.egress) is not None:
            return False
        return all(installed.tables[f].marker == rendered[f].marker for f in plan.families)

    def apply(self, plan: RescuePlan, *, warm: bool = True) -> ApplyReport:
        """Make the kernel match ``plan``; idempotent, and a no-op when it already does.

        ``warm=False``: a repair; a missing table goes back full at once (see above).
        """
        names = (plan.rescue.name, plan.feedback.name)
        before = self.read_installed(names)
        reregister = tuple(
            family.value
            for family in plan.families
            if forgets_registrations(table_shape(plan, family), before.tables.get(family))
        )
        try:
            with _reported("applying the rescue plan"):
                ops = link_changes(before.overlays, plan)
                # A device goes up only once its rules are loaded: up without them, a
                # packet arriving over it (a peer's copy, feedback or registration)
                # reaches the local stack, which resets the connection it belongs to.
                later = [op for op in ops if op.kind is LinkOpKind.LINK_UP]
                with self.iproute() as ipr:
                    steps = self._run_steps(ipr, [op for op in ops if op not in later])
                written, took_over, conntrack = self._apply_tables(plan, before, warm=warm)
                with self.iproute() as ipr:
                    steps += self._run_steps(ipr, later)
                deleted = [f for f in before.tables if f not in plan.families]
                if deleted:
                    self._nft(["-f", "-"], removal_script(deleted))
                # After the tables: their resets chain marks what the guard lets out.
                guarded = self._apply_guard(plan, before.guard)
        except RescueError as error:
            if before.empty:  # a first install that failed leaves nothing behind
                self._roll_back(error)
            raise
        report = ApplyReport(
            link_steps=tuple(steps) + tuple(guarded),
            tables_written=tuple(written),
            tables_deleted=tuple(f.value for f in deleted),
            took_over=tuple(took_over),
            adopted=len(conntrack.adopt),
            liberalized=len(conntrack.liberalize),
            forgotten=len(conntrack.forget),
            registrations_forgotten=reregister,
        )
        log.info(
            "rescue_applied",
            link_steps=len(report.link_steps),
            tables_written=report.tables_written,
            tables_deleted=report.tables_deleted,
            took_over=report.took_over,
            adopted=report.adopted,
            liberalized=report.liberalized,
            forgotten=report.forgotten,
            registrations_forgotten=report.registrations_forgotten,
        )
        return report

    def forget_registrations(self, plan: RescuePlan) -> tuple[str, ...]:
        """Empty ``registered`` in each of ``plan``'s tables that has one (one transaction
        per family, nothing else touched): owners register every flow again at its next
        packet. A table that is not there is skipped (it comes back with the set empty).
        Returns the families emptied."""
        emptied = []
        with _reported("forgetting the flow directory's registrations"):
            for family in plan.families:
                if not any(s.name == REGISTERED for s in table_shape(plan, family).sets):
                    continue
                try:
                    self._nft(["-f", "-"], registrations_script(family))
                except RescueError as error:
                    if "No such file or directory" in str(error):
                        continue
                    raise
                emptied.append(family.value)
        return tuple(emptied)

    def restore(
        self,
        plan: RescuePlan,
        families: Iterable[str],
        written: Callable[[], None] | None = None,
    ) -> ApplyReport:
        """Write back, at once, the full tables of ``families`` that were just deleted
        (``flush ruleset``), then take over: the fast path of a repair.

        Nothing is read or checked first (the text is the one ``apply`` installed and
        checked; the devices are untouched by nft). Each table is replaced whole in one
        transaction, so a table that came back meanwhile is not doubled. ``apply`` after
        it finds the rest in order. ``written`` is called once the tables are back (before
        the take-over, which takes longer: one netlink message per connection).
        """
        wanted = [f for f in plan.families if f.value in set(families)]
        # The netdev table alone (``nft delete table netdev ...``, ``flush ruleset
        # netdev``); with the underlay family's table it comes back in that table's text.
        egress = EGRESS_FAMILY in set(families) and plan.underlay not in wanted
        with _reported("restoring the rescue tables"):
            indexes = self.device_indexes(plan)
            for family in wanted:
                table = render_table(plan, family, device_indexes=indexes)
                replace = f"add table {family.value} {TABLE}\ndelete table {family.value} {TABLE}\n"
                self._nft(["-f", "-"], replace + table.text)
            restored = [f.value for f in wanted]
            if egress and (
                text := render_table(plan, plan.underlay, device_indexes=indexes).egress
            ):
                self._nft(["-f", "-"], text)  # replaces itself whole, as the tables above
                restored.append(EGRESS_FAMILY)
            if written is not None:
                written()
            took_over = [self._take_over(f, plan) for f in wanted if plan.prefixes_of(f)]
        return ApplyReport(
            tables_written=tuple(restored),
            took_over=tuple(f.value for f in wanted if plan.prefixes_of(f)),
            adopted=sum(len(t.adopt) for t in took_over),
            liberalized=sum(len(t.liberalize) for t in took_over),
            forgotten=sum(len(t.forget) for t in took_over),
        )

    def _roll_back(self, error: RescueError) -> None:
        try:
            self.remove()
        except RescueError as failed:
            log.error("rescue_rollback_failed", error=str(failed), cause=str(error))

    def _apply_tables(
        self, plan: RescuePlan, before: Installed, *, warm: bool
    ) -> tuple[list[str], list[str], TakeOver]:
        indexes = self.device_indexes(plan)
        # A table left in warm mode (a crash between the two writes) has not taken over.
        fresh = [
            f
            for f in plan.families
            if f not in before.tables or before.tables[f].mode != RenderMode.FULL.value
        ]
        first = RenderMode.WARM if warm else RenderMode.FULL
        written = []
        for family in fresh:
            table = render_table(plan, family, mode=first, device_indexes=indexes)
            script = table_script(table, before.tables.get(family))
            if script is not None:
                self._write(script)
                if not warm:
                    written.append(family.value)
        changes = TakeOver((), (), ())
        if fresh:
            if warm:  # let conntrack pick up flows that carry packets first
                self._sleep(plan.takeover_warmup)
            # Then fix what it missed.
            for family in fresh:
                if plan.prefixes_of(family):
                    done = self._take_over(family, plan)
                    changes = TakeOver(
                        changes.adopt + done.adopt,
                        changes.liberalize + done.liberalize,
                        changes.forget + done.forget,
                    )
        installed, egress = self._read_tables(), self._read_egress()
        for family in plan.families:
            desired = render_table(plan, family, device_indexes=indexes)
            script = table_script(desired, installed.get(family))
            if script is not None:
                self._write(script)
                written.append(family.value)
            if family is plan.underlay and not (script is not None and desired.egress):
                # Not replaced by the table's own text: the netdev table may be gone or
                # stale (deleted or altered alone), or left from a plan with a directory.
                extra = egress_script(desired, egress)
                if extra is not None:
                    self._write(extra)
                    written.append(EGRESS_FAMILY)
        return written, [f.value for f in fresh], changes

    def remove(self) -> RemoveReport:
        """Delete our tables and devices: the host is as it was before the first apply."""
        with _reported("removing the rescue data path"):
            # The guard first: without the tables it would drop every reset.
            guarded = sorted(self._read_guard())
            for device in guarded:
                self._unguard(device)
            tables = list(self._read_tables())
            if tables:
                self._nft(["-f", "-"], removal_script(tables, egress=True))
            with self.iproute() as ipr:
                overlays = self._read_overlays(ipr, ())
                self._run_steps(ipr, link_changes(overlays, None))
        report = RemoveReport(
            tables=tuple(f.value for f in tables),
            devices=tuple(sorted(overlays)),
            guard=tuple(guarded),
        )
        log.info("rescue_removed", tables=report.tables, devices=report.devices, guard=report.guard)
        return report

    def counters(self) -> RescueCounters:
        """Every rescue counter (zeros for what is not installed)."""
        documents = []
        with _reported("reading the rescue counters"):
            for family in Family:
                document = self._nft_json(["list", "counters", "table", family.value, TABLE])
                if document is not None:
                    documents.append(document)
        return parse_counters(documents)


@dataclass
class AsyncRescueKernel:
    """The same operations as coroutines, each run in a worker thread."""

    kernel: RescueKernel = field(default_factory=RescueKernel)

    async def host_facts(self, settings: RescueConfig) -> HostFacts:
        """See :func:`host_facts`."""
        return await asyncio.to_thread(host_facts, settings)

    async def read_installed(self, names: Iterable[str] = ()) -> Installed:
        """See :meth:`RescueKernel.read_installed`."""
        return await asyncio.to_thread(self.kernel.read_installed, tuple(names))

    async def apply(self, plan: RescuePlan, *, warm: bool = True) -> ApplyReport:
        """See :meth:`RescueKernel.apply`."""
        return await asyncio.to_thread(partial(self.kernel.apply, plan, warm=warm))

    async def restore(self, plan: RescuePlan, families: Iterable[str]) -> ApplyReport:
        """See :meth:`RescueKernel.restore`."""
        return await asyncio.to_thread(self.kernel.restore, plan, tuple(families))

    async def remove(self) -> RemoveReport:
        """See :meth:`RescueKernel.remove`."""
        return await asyncio.to_thread(self.kernel.remove)

    async def forget_registrations(self, plan: RescuePlan) -> tuple[str, ...]:
        """See :meth:`RescueKernel.forget_registrations`."""
        return await asyncio.to_thread(self.kernel.forget_registrations, plan)

    async def in_sync(self, plan: RescuePlan) -> bool:
        """See :meth:`RescueKernel.in_sync`."""
        return await asyncio.to_thread(self.kernel.in_sync, plan)

    async def counters(self) -> RescueCounters:
        """See :meth:`RescueKernel.counters`."""
        return await asyncio.to_thread(self.kernel.counters)
