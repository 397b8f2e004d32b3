"""The kernel shell of flow rescue: read what is installed, apply a plan, remove it all.

Links, addresses, neighbours and FDB entries go through pyroute2; the tables through the
``nft`` command (``-j`` to read, ``-c -f`` to check, ``-f`` to apply, one atomic
transaction per family); device sysctls through /proc/sys. Every method blocks: from
asyncio, call them through ``asyncio.to_thread`` (or use :class:`AsyncRescueKernel`).

Ownership: our devices carry the interface alias ``anycast-announcer rescue``, so
``remove`` finds them without a config, and a device that merely has our name is never
touched. The tables are ``ip anycast_rescue`` and ``ip6 anycast_rescue``.

Apply, in order: the overlay devices (diffed step by step), then per family: a family
without a table gets a *warm* table first (conntrack on, nothing rescued), the sockets
already established on the anycast addresses are entered into conntrack (take-over:
without it, mid-stream packets of connections older than the table would look like
someone else's and be sent away), then the full table replaces it. An installed table
is updated in place when its digest differs. Every table text is checked with
``nft -c`` first; a first install that fails is rolled back. Nothing here changes a
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    InstalledOverlay,
    InstalledTable,
    LinkOp,
    LinkOpKind,
    link_changes,
    parse_table,
    removal_script,
    table_script,
)
from anycast_announcer.rescue.model import TABLE, Family, Overlay, RescuePlan
from anycast_announcer.rescue.render import RenderMode, render_table
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
_TCP_ESTABLISHED = 1
# conntrack: IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED (ctnetlink refuses a new entry
# whose status lacks CONFIRMED with EBUSY); TCP state ESTABLISHED; "be liberal" about
# windows in both directions, as conntrack does itself for connections it picks up
# mid-stream (it never saw the window scale).
_CT_STATUS = 0x2 | 0x4 | 0x8
_CT_TCP_ESTABLISHED = 3
_CT_BE_LIBERAL = 0x08


class RescueError(Exception):
    """The data path could not be read, installed or removed; the message says why."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the plan needs from the host."""

    local_address: IPAddress
    underlay_mtu: int
    mtu_source: str
    """Where the MTU came from: ``config`` or the interfaces routing to the peers."""


@dataclass(frozen=True, slots=True)
class Installed:
    """The rescue state found in the kernel."""

    overlays: Mapping[str, InstalledOverlay]
    tables: Mapping[Family, InstalledTable]

    @property
    def empty(self) -> bool:
        """Nothing of ours is installed."""
        return not self.overlays and not self.tables

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
                    "peers": sorted(dst for _, dst in o.fdb),
                }
                for name, o in sorted(self.overlays.items())
            },
            "tables": {
                family.value: {"mode": table.mode, "marker": table.marker}
                for family, table in sorted(self.tables.items(), key=lambda i: i[0].value)
            },
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

    @property
    def changed(self) -> bool:
        """Whether anything was changed at all."""
        return bool(self.link_steps or self.tables_written or self.tables_deleted)


@dataclass(frozen=True, slots=True)
class RemoveReport:
    """What ``remove`` deleted."""

    tables: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()


# -- host facts --------------------------------------------------------------------------------


def _local_addresses(ipr: Any) -> set[IPAddress]:
    found: set[IPAddress] = set()
    for message in ipr.get_addr():
        address = message.get_attr("IFA_ADDRESS")
        if address is not None:
            found.add(ipaddress.ip_address(address))
    return found


def _route_mtu(ipr: Any, destination: IPAddress) -> int | None:
    try:
        routes = ipr.route("get", dst=str(destination))
    except NetlinkError:
        return None
    if not routes:
        return None
    metrics = routes[0].get_attr("RTA_METRICS")
    if metrics is not None and metrics.get_attr("RTAX_MTU"):
        return int(metrics.get_attr("RTAX_MTU"))
    oif = routes[0].get_attr("RTA_OIF")
    links = ipr.get_links(oif) if oif else []
    return int(links[0].get_attr("IFLA_MTU")) if links else None


def host_facts(settings: RescueConfig) -> HostFacts:
    """This server's member address and the underlay MTU (blocking netlink).

    RescueError when neither the config nor the host says which member this is.
    """
    with IPRoute() as ipr:
        if settings.local_address is not None:
            local: IPAddress = settings.local_address
        else:
            mine = sorted(_local_addresses(ipr) & set(settings.members), key=str)
            if len(mine) != 1:
                what = "none" if not mine else ", ".join(map(str, mine))
                raise RescueError(
                    f"rescue.local_address: not set, and {what} of rescue.members is "
                    "configured on this host; set it"
                )
            local = mine[0]
        if settings.underlay_mtu is not None:
            return HostFacts(local, settings.underlay_mtu, "config")
        mtus = [
            mtu
            for peer in settings.members
            if peer != local and (mtu := _route_mtu(ipr, peer)) is not None
        ]
    if not mtus:
        return HostFacts(local, 1500, "default (no route to any peer)")
    return HostFacts(local, min(mtus), "interfaces routing to the peers")


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


def _established(family: Family) -> list[Flow]:
    """Established TCP sockets of ``family`` as flows (local end first).

    IPv4 connections accepted by a dual-stack IPv6 socket show up as IPv4-mapped IPv6
    addresses: they are IPv4 flows to conntrack, so they are returned unmapped.
    """
    found = []
    with DiagSocket() as diag:
        diag.bind()
        for af in (socket.AF_INET, socket.AF_INET6):
            for message in diag.get_sock_stats(family=af, states=1 << _TCP_ESTABLISHED):
                local = unmapped(ipaddress.ip_address(message.get("idiag_src")))
                remote = unmapped(ipaddress.ip_address(message.get("idiag_dst")))
                if local.version == family.version:
                    lport, rport = int(message.get("idiag_sport")), int(message.get("idiag_dport"))
                    found.append(Flow(local, lport, remote, rport))
    return found


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

    # -- nft -----------------------------------------------------------------------------

    def _nft(self, args: Sequence[str], script: str | None = None) -> str:
        result = subprocess.run(
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
        result = subprocess.run(
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
            (SYSCTL_ROOT / op.args[0]).write_text(op.args[1])
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
        elif kind is LinkOpKind.ADD_NEIGHBOR:
            ipr.neigh(
                "replace", dst=op.args[0], lladdr=op.args[1], ifindex=index, state=_NUD_PERMANENT
            )
        elif kind is LinkOpKind.DEL_NEIGHBOR:
            ipr.neigh("del", dst=op.args[0], ifindex=index)
        elif kind is LinkOpKind.ADD_FDB:
            ipr.fdb("append", ifindex=index, lladdr=op.args[0], dst=op.args[1])
        elif kind is LinkOpKind.DEL_FDB:
            ipr.fdb("del", ifindex=index, lladdr=op.args[0], dst=op.args[1])

    def _run_steps(self, ipr: Any, ops: Iterable[LinkOp]) -> list[str]:
        done = []
        for op in ops:
            try:
                self._step(ipr, op)
            except (NetlinkError, OSError) as exc:
                raise RescueError(f"{op.describe()}: {exc}") from None
            done.append(op.describe())
            log.debug("rescue_link_step", step=op.describe())
        return done

    # -- take-over -----------------------------------------------------------------------

    def _take_over(self, family: Family, plan: RescuePlan) -> TakeOver:
        """Reconcile conntrack with the established sockets (see ``takeover``)."""
        af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
        with NFCTSocket(nfgen_family=af) as conntrack:
            todo = plan_take_over(
                _ct_entries(conntrack, family), _established(family), plan.prefixes_of(family)
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
        with IPRoute() as ipr:
            overlays = self._read_overlays(ipr, names)
        return Installed(overlays, self._read_tables())

    def device_indexes(self, plan: RescuePlan) -> dict[str, int]:
        """The interface index of each overlay device (dup rules are bound to them)."""
        with IPRoute() as ipr:
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
        indexes = self.device_indexes(plan)
        return all(
            installed.tables[family].marker
            == render_table(plan, family, device_indexes=indexes).marker
            for family in plan.families
        )

    def apply(self, plan: RescuePlan) -> ApplyReport:
        """Make the kernel match ``plan``; idempotent, and a no-op when it already does."""
        names = (plan.rescue.name, plan.feedback.name)
        before = self.read_installed(names)
        with IPRoute() as ipr:
            steps = self._run_steps(ipr, link_changes(before.overlays, plan))
        try:
            written, took_over, conntrack = self._apply_tables(plan, before)
        except RescueError:
            if before.empty:  # a first install that failed leaves nothing behind
                self.remove()
            raise
        deleted = [f for f in before.tables if f not in plan.families]
        if deleted:
            self._nft(["-f", "-"], removal_script(deleted))
        report = ApplyReport(
            link_steps=tuple(steps),
            tables_written=tuple(written),
            tables_deleted=tuple(f.value for f in deleted),
            took_over=tuple(took_over),
            adopted=len(conntrack.adopt),
            liberalized=len(conntrack.liberalize),
            forgotten=len(conntrack.forget),
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
        )
        return report

    def _apply_tables(
        self, plan: RescuePlan, before: Installed
    ) -> tuple[list[str], list[str], TakeOver]:
        indexes = self.device_indexes(plan)
        fresh = [f for f in plan.families if f not in before.tables]
        for family in fresh:
            warm = render_table(plan, family, mode=RenderMode.WARM, device_indexes=indexes)
            self._write(warm.text)
        changes = TakeOver((), (), ())
        if fresh:
            # Let conntrack pick up flows that carry packets, then fix what it missed.
            self._sleep(plan.takeover_warmup)
            for family in fresh:
                if plan.prefixes_of(family):
                    done = self._take_over(family, plan)
                    changes = TakeOver(
                        changes.adopt + done.adopt,
                        changes.liberalize + done.liberalize,
                        changes.forget + done.forget,
                    )
        written = []
        installed = self._read_tables()
        for family in plan.families:
            desired = render_table(plan, family, device_indexes=indexes)
            script = table_script(desired, installed.get(family))
            if script is not None:
                self._write(script)
                written.append(family.value)
        return written, [f.value for f in fresh], changes

    def remove(self) -> RemoveReport:
        """Delete our tables and devices: the host is as it was before the first apply."""
        tables = list(self._read_tables())
        if tables:
            self._nft(["-f", "-"], removal_script(tables))
        with IPRoute() as ipr:
            overlays = self._read_overlays(ipr, ())
            self._run_steps(ipr, link_changes(overlays, None))
        report = RemoveReport(
            tables=tuple(f.value for f in tables), devices=tuple(sorted(overlays))
        )
        log.info("rescue_removed", tables=report.tables, devices=report.devices)
        return report

    def counters(self) -> RescueCounters:
        """Every rescue counter (zeros for what is not installed)."""
        documents = []
        for family in Family:
            document = self._nft_json(["list", "counters", "table", family.value, TABLE])
            if document is not None:
                documents.append(document)
        return parse_counters(documents)


@dataclass
class AsyncRescueKernel:
    """The same operations as coroutines, each run in a worker thread."""

    kernel: RescueKernel = field(default_factory=RescueKernel)

    async def read_installed(self, names: Iterable[str] = ()) -> Installed:
        """See :meth:`RescueKernel.read_installed`."""
        return await asyncio.to_thread(self.kernel.read_installed, tuple(names))

    async def apply(self, plan: RescuePlan) -> ApplyReport:
        """See :meth:`RescueKernel.apply`."""
        return await asyncio.to_thread(self.kernel.apply, plan)

    async def remove(self) -> RemoveReport:
        """See :meth:`RescueKernel.remove`."""
        return await asyncio.to_thread(self.kernel.remove)

    async def in_sync(self, plan: RescuePlan) -> bool:
        """See :meth:`RescueKernel.in_sync`."""
        return await asyncio.to_thread(self.kernel.in_sync, plan)

    async def counters(self) -> RescueCounters:
        """See :meth:`RescueKernel.counters`."""
        return await asyncio.to_thread(self.kernel.counters)
