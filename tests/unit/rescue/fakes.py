"""Fakes at the rescue shell's process boundary: ``nft``, netlink, conntrack, sockets.

Shared by the unit tests of ``rescue.kernel`` and of ``workers.rescue``. Each fake keeps
the state a real kernel would (tables by family and their marker, conntrack entries), so
a test can assert on what the shell left behind, not on which calls it made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anycast_announcer.config import RescueConfig
from anycast_announcer.rescue.counters import RescueCounters
from anycast_announcer.rescue.diff import DEVICE_SYSCTLS
from anycast_announcer.rescue.kernel import ApplyReport, HostFacts, Installed, RescueKernel
from anycast_announcer.rescue.model import TABLE, Family, RescuePlan
from anycast_announcer.rescue.takeover import CtEntry, Flow

# The info rule of an ip/ip6 table, the egress rule of the netdev table.
_MARKER = re.compile(r'(?:return|dir_relayed) comment "([^"]*)"')


@dataclass
class FakeNft:
    """``subprocess.run`` for the ``nft`` command, over tables kept as their markers
    (by family: ``ip``, ``ip6``, and ``netdev`` for the flow directory's egress table)."""

    tables: dict[str, str] = field(default_factory=dict)
    scripts: list[str] = field(default_factory=list)
    fail: Callable[[str], BaseException | None] = lambda script: None
    """Called with each script before it is applied: an exception to raise, or None."""

    batches: list[tuple[str, str]] = field(default_factory=list)
    """``ip -batch`` / ``bridge -batch`` inputs (neighbour and FDB steps)."""

    guard: dict[str, str] = field(default_factory=dict)
    """``tc``: the reset guard's bytecode per device (a clsact qdisc with our filter)."""

    changes: list[str] = field(default_factory=list)
    """Every change, in order: ``nft -f`` and ``tc filter replace|del DEVICE``."""

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        args, script = argv[1:], kwargs.get("input")
        if argv[0] == "tc":
            return self._tc(argv)
        if argv[0] in ("ip", "bridge"):
            assert args[-2:] == ["-batch", "-"]
            self.batches.append((argv[0], str(script)))
            return self._done(argv)
        if args[:2] == ["-c", "-f"]:
            return self._done(argv)
        if args[:1] == ["-f"]:
            assert script is not None
            error = self.fail(script)
            if error is not None:
                raise error
            if missing := self._missing(script):
                return self._done(argv, 1, stderr=f"Error: No such file or directory ({missing})")
            self._apply(script)
            self.changes.append("nft -f")
            return self._done(argv)
        if args[:1] == ["-j"] and args[1] == "list":
            family = args[-2]
            if family not in self.tables:
                return self._done(argv, 1, stderr="Error: No such file or directory")
            chain = "egress" if family == "netdev" else "info"
            rules = [{"rule": {"chain": chain, "comment": self.tables[family]}}]
            document = {"nftables": [{"table": {"family": family, "name": TABLE}}, *rules]}
            if args[2] == "counters":
                document = {"nftables": []}
            return self._done(argv, stdout=json.dumps(document))
        raise AssertionError(f"unexpected nft call {argv}")

    def _tc(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Just enough of tc for the guard: one filter per device, nothing else."""
        args = argv[1:]
        if args == ["-j", "qdisc", "show"]:
            qdiscs = [{"kind": "clsact", "dev": dev} for dev in sorted(self.guard)]
            return self._done(argv, stdout=json.dumps(qdiscs))
        if args[:3] == ["-j", "filter", "show"]:
            program = self.guard.get(args[4])
            if program is None:
                return self._done(argv, stdout="[]")
            count, *insns = program.split(",")
            code = {
                "length": int(count),
                "insns": [
                    dict(zip(("code", "jt", "jf", "k"), map(int, i.split()), strict=True))
                    for i in insns
                ],
            }
            shown = [{"kind": "bpf", "options": {"bytecode": code}}]
            return self._done(argv, stdout=json.dumps(shown))
        if args[:2] == ["filter", "replace"]:
            self.guard[args[3]] = args[-1]
            self.changes.append(f"tc filter replace {args[3]}")
        elif args[:2] == ["filter", "del"]:
            self.guard.pop(args[3], None)
            self.changes.append(f"tc filter del {args[3]}")
        elif args[:2] == ["filter", "show"] or args[0] == "qdisc":
            pass
        else:
            raise AssertionError(f"unexpected tc call {argv}")
        return self._done(argv)

    def _missing(self, script: str) -> str | None:
        """The family of a ``flush set`` whose table is not there, as nft refuses it."""
        for line in script.splitlines():
            words = line.split()
            if words[:2] == ["flush", "set"] and words[2] not in self.tables:
                return words[2]
        return None

    def _apply(self, script: str) -> None:
        self.scripts.append(script)
        family = None
        for line in script.splitlines():
            words = line.split()
            if words[:2] == ["delete", "table"]:
                self.tables.pop(words[2], None)
            elif words[:1] == ["table"]:
                family = words[1]
            elif (found := _MARKER.search(line)) and family is not None:
                self.tables[family] = found.group(1)

    @staticmethod
    def _done(
        argv: list[str], code: int = 0, *, stdout: str = "", stderr: str = ""
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, code, stdout, stderr)


@dataclass
class FakeIPRoute:
    """pyroute2's IPRoute with no links of ours found, recording the steps it is given."""

    calls: list[tuple[str, ...]] = field(default_factory=list)
    indexes: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> FakeIPRoute:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_links(self) -> list[Any]:
        return []

    def link_lookup(self, ifname: str) -> list[int]:
        return [self.indexes[ifname]] if ifname in self.indexes else []

    def link(self, command: str, **attrs: Any) -> None:
        self.calls.append(("link", command))
        if command == "add":
            # No link is ever found (get_links), so every apply adds them again: keep
            # their indexes, or every apply would see new ones and rewrite the tables.
            self.indexes.setdefault(attrs["ifname"], 100 + len(self.indexes))

    def addr(self, command: str, **attrs: Any) -> None:
        self.calls.append(("addr", command))

    def neigh(self, command: str, **attrs: Any) -> None:
        self.calls.append(("neigh", command))

    def fdb(self, command: str, **attrs: Any) -> None:
        self.calls.append(("fdb", command))


class _Message:
    """A netlink message as pyroute2 gives it: nested ``get_attr``."""

    def __init__(self, **attrs: Any) -> None:
        self._attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self._attrs.get(name)


def ct_message(entry: CtEntry) -> _Message:
    """A conntrack dump message of a TCP entry."""
    v = "V4" if entry.source.version == 4 else "V6"
    addresses = {f"CTA_IP_{v}_SRC": str(entry.source), f"CTA_IP_{v}_DST": str(entry.destination)}
    ip = _Message(**addresses)
    proto = _Message(
        CTA_PROTO_NUM=6,
        CTA_PROTO_SRC_PORT=entry.source_port,
        CTA_PROTO_DST_PORT=entry.destination_port,
    )
    return _Message(CTA_TUPLE_ORIG=_Message(CTA_TUPLE_IP=ip, CTA_TUPLE_PROTO=proto))


@dataclass
class FakeConntrack:
    """NFCTSocket over a set of entries; ``dump_error`` makes the dump fail."""

    entries: set[CtEntry] = field(default_factory=set)
    dump_error: BaseException | None = None
    commands: list[tuple[str, str]] = field(default_factory=list)
    version: int = 4

    def __call__(self, af: int) -> FakeConntrack:
        self.version = 4 if af == socket.AF_INET else 6
        return self

    def __enter__(self) -> FakeConntrack:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def dump(self) -> list[_Message]:
        if self.dump_error is not None:
            raise self.dump_error
        mine = [e for e in self.entries if e.source.version == self.version]
        return [ct_message(entry) for entry in sorted(mine)]

    def entry(self, command: str, **attrs: Any) -> None:
        t = attrs["tuple_orig"]
        entry = CtEntry(
            ipaddress.ip_address(t.saddr), t.sport, ipaddress.ip_address(t.daddr), t.dport
        )
        self.commands.append((command, str(entry)))
        if command == "del":
            self.entries.discard(entry)
        elif command == "add":
            self.entries.add(entry)


@dataclass
class FakeSockets:
    """The host's TCP sockets: held and TIME_WAIT flows."""

    held: list[Flow] = field(default_factory=list)
    lingering: list[Flow] = field(default_factory=list)

    def __call__(self, family: Family) -> tuple[list[Flow], list[Flow]]:
        pick = [f for f in self.held if f.local.version == family.version]
        wait = [f for f in self.lingering if f.local.version == family.version]
        return pick, wait


def sysctl_tree(root: Path, devices: tuple[str, ...] = ("anycast-rsc", "anycast-fb")) -> Path:
    """A stand-in for /proc/sys/net with the per-device directories of ``devices``."""
    for device in devices:
        for template in DEVICE_SYSCTLS:
            (root / template.format(dev=device)).parent.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class FakeHost:
    """A whole fake process boundary, and a RescueKernel wired to it."""

    root: Path
    nft: FakeNft = field(default_factory=FakeNft)
    ipr: FakeIPRoute = field(default_factory=FakeIPRoute)
    conntrack: FakeConntrack = field(default_factory=FakeConntrack)
    sockets: FakeSockets = field(default_factory=FakeSockets)

    def kernel(self) -> RescueKernel:
        return RescueKernel(
            _sleep=lambda seconds: None,
            run=self.nft,
            iproute=lambda: self.ipr,
            conntrack=self.conntrack,
            sockets=self.sockets,
            sysctl_root=sysctl_tree(self.root),
        )


@dataclass
class FakeKernelPort:
    """The keeper's kernel: remembers the plan last applied; gates let a test interleave."""

    local: HostFacts
    applied: list[RescuePlan] = field(default_factory=list)
    apply_gate: asyncio.Event | None = None
    check_gate: asyncio.Event | None = None
    in_sync_answer: bool | None = None
    """None: compare with the plan last applied; else this answer."""
    apply_error: BaseException | None = None
    checks: int = 0
    warm: list[bool] = field(default_factory=list)
    restored: list[frozenset[str]] = field(default_factory=list)
    forgets: tuple[str, ...] = ()
    """The ``registrations_forgotten`` of every apply's report."""
    reregistered: list[tuple[float, RescuePlan]] = field(default_factory=list)
    """(loop time, plan) of every ``forget_registrations``."""

    async def host_facts(self, settings: RescueConfig) -> HostFacts:
        return self.local

    async def apply(self, plan: RescuePlan, *, warm: bool = True) -> ApplyReport:
        self.warm.append(warm)
        if self.apply_gate is not None:
            await self.apply_gate.wait()
        if self.apply_error is not None:
            raise self.apply_error
        self.applied.append(plan)
        return ApplyReport(tables_written=("ip",), registrations_forgotten=self.forgets)

    async def forget_registrations(self, plan: RescuePlan) -> tuple[str, ...]:
        self.reregistered.append((asyncio.get_running_loop().time(), plan))
        return ("ip",)

    async def in_sync(self, plan: RescuePlan) -> bool:
        self.checks += 1
        if self.check_gate is not None:
            await self.check_gate.wait()
        if self.in_sync_answer is not None:
            return self.in_sync_answer
        return bool(self.applied) and self.applied[-1] == plan

    async def restore(self, plan: RescuePlan, families: Iterable[str]) -> ApplyReport:
        self.restored.append(frozenset(families))
        self.applied.append(plan)
        return ApplyReport(tables_written=tuple(sorted(families)))

    async def counters(self) -> RescueCounters:
        return RescueCounters()

    async def read_installed(self) -> Installed:
        return Installed(overlays={}, tables={})
