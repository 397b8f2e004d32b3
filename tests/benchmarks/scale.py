"""§4 and §5 at group sizes 16 and 64: one rescue group behind several leaves.

Runs on the scale lab (``tests.benchmarks.scalelab``; ``containerlab/rescue64`` at N = 64,
4 leaves x 16; N = 16 is 2 leaves x 8). leaf1's members run real sidecars that learn the
group from the fabric; the other leaves' members are data-path-only (``rescue install``
with the whole group as static members), their anycast and member routes originated by
their leaf. Every member serves the lab TCP service on the anycast address.

For each N, events on two *affected* members, each event with its own fresh sessions
from the client (one ping every 0.3 s each way, so with ACKs several packets a second per
session), ``sessions`` of them to the anycast address of each family (``--families``:
10.255.0.1 and fd00:255::1 by default, both held through the same events; the lab is
dual-stack over an IPv4 underlay, read ``tests.benchmarks.scalelab``):

- **sidecar** (the last member of leaf1): **withdrawal**, its sidecar stops (SIGTERM
  withdraws its anycast and member routes; service and data path stay, as they do on a
  real server being taken out); **addition**, its sidecar starts again.
- **data_path_only** (the last member of leaf2): **withdrawal**, leaf2 stops originating
  it: its static anycast next hop goes and so does its member route, as a sidecar's
  SIGTERM takes both (its service and data path stay); **addition**, leaf2 routes to it
  and originates its member route again. The sidecars must keep it in their data paths
  through the withdrawal (hold-down), which each row records.

Each mode runs every event ``--repeats`` times, in this order, on the same lab:

- **rescue**: data paths everywhere, as described above;
- **control**: then rescue off everywhere on the same lab: every sidecar stopped, every
  member's data path removed (``rescue remove``), the sidecars restarted without a
  ``rescue`` section (no data path, no member route, nothing learnt), and the same events
  again. Its broken sessions are what the fabric's rehashing does without rescue, measured
  rather than computed from the hash math.

Per event and family: sessions broken, on the affected member (*own*) and elsewhere
(*innocent*). Per event, over the ``window`` seconds after it, every member's rescue
counters read straight from its nftables tables (one per family): ``underlay_sent``
(every VXLAN packet a member sent, each replica of a blind copy and every feedback
packet counted; the IPv4 underlay carries both families, so this has no per-family
split) summed over all members, divided by the rescued packets that owners accepted
(the per-peer ``received``, of both families; each family's own count is in its row). The
issue's target is at most 2 underlay packets per rescued packet; blind copies go to
all N - 1 members, so this measures whatever data path is installed (the counters are
the same whichever rules produce them). A control event has no window (there are no
counters): its sessions are held ``SETTLE`` seconds after the FIB change.

Also per N: how long the lab and the group take to come up, how long the sidecars take
to learn every member, and one sidecar's idle RSS and CPU (sidecar + ExaBGP), which is
what decided how many real sidecars this 2-core machine carries.

    sudo .venv/bin/python -m tests.benchmarks.scale [--quick] [--sizes 16,64] [--repeats K] \\
        [--families 4,6]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from anycast_announcer.rescue.counters import RescueCounters, parse_counters
from tests.benchmarks.common import (
    LabService,
    machine,
    start_hold,
    tree_cpu,
    tree_rss_bytes,
    wait_for,
)
from tests.benchmarks.hashmath import movement
from tests.benchmarks.scalelab import (
    ANYCAST,
    ANYCAST6,
    ANYCASTS,
    COMMUNITY,
    PREFIX_LENGTH,
    ScaleLab,
    leaf_address,
    leaf_address6,
    leaf_as,
    member_address,
    member_address6,
    member_as,
    member_route,
    write,
)
from tests.lablib import REPO_ROOT, unique_lab_name

SERVICE_PORT = 8080
EVENTS = ("withdrawal", "addition")
KINDS = ("sidecar", "data_path_only")
"""Which member an event hits: leaf1's last sidecar, or leaf2's last data-path-only member."""
MODES = ("rescue", "control")
SOURCES = 240
"""Client addresses per group size, one per event (no 4-tuple is ever reused)."""
MAX_REPEATS = SOURCES // (len(MODES) * len(KINDS) * len(EVENTS))
SETTLE = 3.5
"""Seconds after the FIB changed for every broken session to notice (pings every 0.3 s)."""
FAMILIES = (4, 6)
"""The address families the lab carries; ``--families`` picks the ones the client holds
sessions in (every event's sessions of both come from one client address index)."""
_NFT_FAMILY = {4: "ip", 6: "ip6"}


@dataclass(frozen=True, slots=True)
class Size:
    """One group size and how hard to drive it."""

    leaves: int
    per_leaf: int
    sessions: int
    window: float = 10.0
    idle_seconds: float = 10.0
    repeats: int = 1
    control_kinds: tuple[str, ...] = KINDS
    """The affected members the control runs its events on (all of them but in the smoke)."""
    families: tuple[int, ...] = FAMILIES
    """The families whose anycast address the client holds ``sessions`` sessions to."""

    @property
    def shape(self) -> ScaleLab:
        return ScaleLab(self.leaves, self.per_leaf)


FULL = (Size(2, 8, sessions=320), Size(4, 16, sessions=640))
QUICK = (Size(2, 8, sessions=160), Size(4, 16, sessions=320))
TINY = Size(2, 4, sessions=96, window=SETTLE, idle_seconds=2.0, control_kinds=("sidecar",))
"""For the smoke test: the code runs, the numbers mean little. Its control runs only the
sidecar's events, which are enough to show that sessions break without rescue. Both
families' sessions share its events, which costs it no extra event."""


def _target(family: int) -> str:
    return f"[{ANYCAST6}]:{SERVICE_PORT}" if family == 6 else f"{ANYCAST}:{SERVICE_PORT}"


def _prefix(family: int) -> str:
    return f"{ANYCASTS[family]}/{PREFIX_LENGTH[family]}"


def _sidecar_config(member: int) -> dict[str, Any]:
    """A leaf1 member's sidecar: the anycast prefix, membership learnt from the fabric."""
    return {
        "bgp": {
            "local_as": member_as(member),
            "router_id": member_address(member),
            "hold_time": 9,
            # A sidecar announces a prefix on the sessions of its family only.
            "peers": [
                {"address": leaf_address(member), "peer_as": leaf_as(1)},
                {"address": leaf_address6(member), "peer_as": leaf_as(1)},
            ],
        },
        "services": [
            {
                "name": "web",
                "check": {"type": "tcp", "host": ANYCAST, "port": SERVICE_PORT},
                "interval": 0.5,
                "timeout": 0.25,
                "rise": 2,
                "fall": 2,
            }
        ],
        "prefixes": [
            {"prefix": _prefix(family), "services": ["web"], "dampening": {"enabled": False}}
            for family in FAMILIES
        ],
        "allowed_prefixes": ["10.255.0.0/24", "fd00:255::/64"],
        "rescue": {
            "membership": {
                "community": COMMUNITY,
                "underlay_prefixes": ["10.2.0.0/16"],
                "route_prefixes": ["10.254.0.0/16"],
            }
        },
        "http": {"listen": ""},
        "logging": {"format": "json", "level": "info"},
    }


def _static_config(shape: ScaleLab, member: int) -> dict[str, Any]:
    """A data-path-only member: ``rescue install`` reads its prefixes and static members."""
    config = _sidecar_config(member)
    del config["rescue"]
    peer_as = leaf_as(shape.leaf_of(member))
    config["bgp"]["peers"] = [
        {"address": leaf_address(member), "peer_as": peer_as},
        {"address": leaf_address6(member), "peer_as": peer_as},
    ]
    config["rescue"] = {"members": [member_address(g) for g in range(1, shape.members + 1)]}
    return config


@dataclass(frozen=True, slots=True)
class Totals:
    """Rescue counters summed over every member."""

    underlay_sent: int
    rescued: int
    replicated: int
    forwarded_learnt: int
    feedback_sent: int
    refused: int
    orphans: int
    budget_dropped: int

    @classmethod
    def of(cls, counters: list[RescueCounters]) -> Totals:
        def peers(field: str) -> int:
            return sum(getattr(p, field).packets for c in counters for p in c.peers)

        return cls(
            underlay_sent=sum(c.underlay_sent.packets for c in counters),
            rescued=peers("received"),
            replicated=sum(c.replicated.packets for c in counters),
            forwarded_learnt=peers("forwarded_learnt"),
            feedback_sent=peers("feedback_sent"),
            refused=peers("refused"),
            orphans=sum(c.orphans.packets for c in counters),
            budget_dropped=sum(
                c.blind_limited.packets + c.blind_source_limited.packets + c.blind_refused.packets
                for c in counters
            ),
        )

    def minus(self, other: Totals) -> dict[str, int]:
        return {f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}


def _per_table(listing: dict[str, Any]) -> dict[int, RescueCounters]:
    """``nft -j list counters`` of a member, split into each family's rescue table."""
    families = {name: family for family, name in _NFT_FAMILY.items()}
    tables: dict[int, list[dict[str, Any]]] = {family: [] for family in FAMILIES}
    for item in listing.get("nftables", []):
        counter = item.get("counter", {})
        if counter.get("table") == "anycast_rescue" and counter.get("family") in families:
            tables[families[counter["family"]]].append(item)
    return {family: parse_counters([{"nftables": items}]) for family, items in tables.items()}


class Group:
    """The members of one scale lab: services, data paths, sidecars."""

    def __init__(
        self, lab: Lab, shape: ScaleLab, workdir: Path, families: tuple[int, ...] = FAMILIES
    ) -> None:
        self.lab, self.shape, self.workdir = lab, shape, workdir
        self.families = families
        """The families the client holds sessions in; their FIBs mark an event's moment."""
        listen = [_target(family) for family in FAMILIES]
        self.services = {
            g: LabService(lab, f"m{g}", workdir, listen=listen) for g in range(1, shape.members + 1)
        }
        self.sidecars: dict[int, subprocess.Popen[Any]] = {}
        self.rescue = True
        """False once :meth:`turn_rescue_off` ran: the control's sidecars have no rescue."""
        self._sources = iter(range(10, 10 + SOURCES))
        self.events = iter(range(1_000_000))
        """Numbers each event's files: no two events share one."""
        self._pool = ThreadPoolExecutor(max_workers=16)

    def _config_path(self, member: int) -> Path:
        path = self.workdir / f"m{member}{'' if self.rescue else '-norescue'}.json"
        if not path.exists():
            config = (
                _sidecar_config(member)
                if self.shape.has_sidecar(member)
                else _static_config(self.shape, member)
            )
            if not self.rescue:
                del config["rescue"]
            path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def _cli(self, member: int, *argv: str) -> str:
        command = [sys.executable, "-m", "anycast_announcer", *argv]
        return self.lab.run(f"m{member}", command).stdout

    def start_services(self) -> None:
        list(self._pool.map(lambda s: s.start(), self.services.values()))

    def install_data_paths(self) -> None:
        """``rescue install`` on every data-path-only member (before traffic reaches it)."""
        members = self.shape.data_path_only
        list(
            self._pool.map(
                lambda g: self._cli(g, "rescue", "install", "-c", str(self._config_path(g))),
                members,
            )
        )

    def start_sidecar(self, member: int) -> None:
        log = (self.workdir / f"m{member}-sidecar.log").open("ab")
        with log:
            self.sidecars[member] = self.lab.popen(
                f"m{member}",
                [
                    sys.executable,
                    "-m",
                    "anycast_announcer",
                    "run",
                    "-c",
                    str(self._config_path(member)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop_sidecar(self, member: int) -> None:
        process = self.sidecars.pop(member)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def affected(self, kind: str) -> int:
        """The member an event of ``kind`` hits: the last one of leaf1 or of leaf2."""
        return self.shape.per_leaf * (1 if kind == "sidecar" else 2)

    def leaf_hops(self, leaf: int, family: int = 4) -> list[tuple[str, int]]:
        """The leaf's next hops for the family's anycast prefix that are its own members
        (not its uplink, eth1), in kernel order, with weights."""
        out = self.lab.run(
            f"leaf{leaf}",
            ["ip", f"-{family}", "-j", "route", "show", _prefix(family)],
            check=False,
        ).stdout
        hops = []
        for route in json.loads(out or "[]"):
            # An IPv6 next hop learnt over BGP may be the member's link-local address:
            # the device tells a member from the uplink in both families.
            for hop in route.get("nexthops", [route]):
                if "gateway" in hop and hop.get("dev") != "eth1":
                    hops.append((str(hop["gateway"]), int(hop.get("weight", 1))))
        return hops

    def hops(self, leaf: int) -> dict[int, list[tuple[str, int]]]:
        """:meth:`leaf_hops` of every family the client holds sessions in."""
        return {family: self.leaf_hops(leaf, family) for family in self.families}

    def wait_hops(self, count: int, timeout: float = 60, leaf: int = 1) -> None:
        """Until ``leaf`` has ``count`` member next hops in every held family."""
        families = "/".join(f"IPv{f}" for f in self.families)
        wait_for(
            lambda: all(len(h) == count for h in self.hops(leaf).values()),
            timeout,
            f"leaf{leaf} never reached {count} member next hops in {families}",
            interval=0.1,
        )

    def originate(self, member: int, on: bool) -> None:
        """A data-path-only member's leaf starts or stops routing to it and originating its
        member route (both, as a sidecar's start or SIGTERM does); its data path stays."""
        leaf = self.shape.leaf_of(member)
        no = "" if on else "no "
        done = subprocess.run(
            [
                *("vtysh", "-N", self.lab.ns(f"leaf{leaf}")),
                *("-c", "configure terminal"),
                *("-c", f"{no}ip route {ANYCAST}/32 {member_address(member)}"),
                *("-c", f"{no}ipv6 route {ANYCAST6}/128 {member_address6(member)}"),
                *("-c", f"router bgp {leaf_as(leaf)}"),
                *("-c", "address-family ipv4 unicast"),
                *("-c", f"{no}network {member_route(member)} route-map RESCUE-ORIGINATE"),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"leaf{leaf}: vtysh failed: {(done.stdout + done.stderr).strip()}")

    def member_route_at_leaf1(self, member: int) -> bool:
        """Whether leaf1, and so its sidecars, has the member's member route."""
        route = self.lab.vtysh_json("leaf1", f"show ip bgp {member_route(member)} json")
        return bool(route.get("paths"))

    def member_set(self, member: int) -> int:
        """How many members ``member``'s data path holds (its nft ``members`` set)."""
        out = self.lab.run(
            f"m{member}",
            ["nft", "-j", "list", "set", "ip", "anycast_rescue", "members"],
            check=False,
        ).stdout
        for item in json.loads(out or "{}").get("nftables", []):
            if "set" in item:
                return len(item["set"].get("elem", []))
        return 0

    def holding_group(self) -> int:
        """How many sidecars' data paths hold the whole group (learnt from the fabric)."""
        # The set holds every member, this one too.
        counts = self._pool.map(self.member_set, self.shape.sidecars)
        return sum(1 for c in counts if c == self.shape.members)

    def learnt_everywhere(self) -> bool:
        return self.holding_group() == len(self.shape.sidecars)

    def turn_rescue_off(self) -> None:
        """For the control: no data path anywhere, sidecars without rescue, all announced."""
        list(self._pool.map(self.stop_sidecar, list(self.sidecars)))
        # The data path outlives a stopped sidecar on purpose; remove it everywhere.
        everyone = range(1, self.shape.members + 1)
        list(self._pool.map(lambda g: self._cli(g, "rescue", "remove"), everyone))
        self.rescue = False
        for member in self.shape.sidecars:
            self.start_sidecar(member)
        self.wait_hops(len(self.shape.sidecars), timeout=180)

    def counters(self) -> dict[int, Totals]:
        """Every member's rescue counters per family's table, summed over the members;
        read in parallel straight from nftables, one ``nft`` per member for both tables."""

        def read(member: int) -> dict[int, RescueCounters]:
            out = self.lab.run(f"m{member}", ["nft", "-j", "list", "counters"], check=False)
            return _per_table(json.loads(out.stdout) if out.stdout.strip() else {})

        members = list(self._pool.map(read, range(1, self.shape.members + 1)))
        return {family: Totals.of([m[family] for m in members]) for family in FAMILIES}

    def abort_sessions(self) -> None:
        for service in self.services.values():
            service.abort_sessions()

    def fresh_sources(self) -> dict[int, str]:
        """A client address per family that no earlier run used: no 4-tuple is ever
        reused. Both families' addresses of one event share their index."""
        index = next(self._sources)
        sources = {4: f"10.3.0.{index}", 6: f"fd00:3::{index}"}
        added = {4: [f"{sources[4]}/24", "dev", "eth1"], 6: [f"{sources[6]}/64", "dev", "eth1"]}
        # No DAD for the IPv6 one: the client binds to it at once.
        added[6].append("nodad")
        for family in self.families:
            self.lab.run("client", ["ip", f"-{family}", "addr", "add", *added[family]])
        return {family: sources[family] for family in self.families}

    def idle_cost(self, seconds: float) -> dict[str, Any]:
        """RSS and CPU of each running sidecar (with its ExaBGP child) while nothing happens."""
        pids = {g: p.pid for g, p in self.sidecars.items()}
        before = {g: sum(tree_cpu(pid).values()) for g, pid in pids.items()}
        time.sleep(seconds)
        after = {g: sum(tree_cpu(pid).values()) for g, pid in pids.items()}
        rss = [tree_rss_bytes(pid) / 2**20 for pid in pids.values()]
        cpu = [100 * (after[g] - before[g]) / seconds for g in pids]
        return {
            "sidecars": len(pids),
            "rss_mib_median": round(statistics.median(rss), 1),
            "rss_mib_max": round(max(rss), 1),
            "cpu_percent_median": round(statistics.median(cpu), 2),
            "cpu_percent_total": round(sum(cpu), 1),
            "seconds": seconds,
        }

    def close(self) -> None:
        for member in list(self.sidecars):
            self.stop_sidecar(member)
        for service in self.services.values():
            service.kill()
        self._pool.shutdown()


def _act(group: Group, kind: str, event: str, member: int) -> None:
    """Withdraw or add ``member``: its sidecar, or its leaf's routes to it."""
    if kind == "data_path_only":
        group.originate(member, on=event == "addition")
    elif event == "withdrawal":
        # SIGTERM only: the window runs from the FIB change, not from the exit.
        group.sidecars[member].send_signal(signal.SIGTERM)
    else:
        group.start_sidecar(member)


def _hold_sessions(
    group: Group, size: Size, tag: str
) -> dict[int, tuple[subprocess.Popen[Any], Path]]:
    """The client's sessions in every family, each from a fresh address; all open."""
    sources = group.fresh_sources()
    holds: dict[int, tuple[subprocess.Popen[Any], Path]] = {}
    try:
        for family in group.families:
            holds[family] = start_hold(
                group.lab,
                _target(family),
                size.sessions,
                sources[family],
                group.workdir,
                f"{tag}-v{family}",
            )
    except BaseException:
        _release(holds)
        raise
    return holds


def _release(holds: dict[int, tuple[subprocess.Popen[Any], Path]]) -> None:
    """Stop the client's sessions; each writes its result file on the way out."""
    for process, _ in holds.values():
        process.send_signal(signal.SIGTERM)
    for process, _ in holds.values():
        process.wait(timeout=30)


def _wait_fib_change(
    group: Group, leaf: int, before: dict[int, list[tuple[str, int]]], what: str
) -> dict[int, float]:
    """When each family's next hops on ``leaf`` first differed from ``before``."""
    changed: dict[int, float] = {}

    def every_family_changed() -> bool:
        for family, hops in group.hops(leaf).items():
            if family not in changed and hops != before[family]:
                changed[family] = time.monotonic()
        return len(changed) == len(before)

    wait_for(every_family_changed, 60, f"{what}: leaf{leaf}'s next hops never changed", 0.05)
    return changed


def one_event(group: Group, kind: str, event: str, size: Size) -> dict[str, Any]:
    """Hold sessions, withdraw or add the affected member, count over the window."""
    shape = group.shape
    affected = group.affected(kind)
    leaf = shape.leaf_of(affected)
    # The control has no counters to read: its sessions only need to notice.
    window = size.window if group.rescue else 0.0
    group.abort_sessions()
    time.sleep(0.5)
    holds = _hold_sessions(
        group,
        size,
        f"{shape.members}-{'rescue' if group.rescue else 'control'}-{kind}-{event}-"
        f"{next(group.events)}",
    )
    try:
        before = group.hops(leaf)
        read_started = time.monotonic()
        counted_before = group.counters()
        # The members are read in parallel but not at one instant: the after-read starts
        # half this early, so that each member's window is ``window`` give or take half.
        read_spread = time.monotonic() - read_started
        started = time.monotonic()
        _act(group, kind, event, affected)
        # The window runs from the moment every held family's FIB changed.
        changed_at = _wait_fib_change(group, leaf, before, f"{event} of m{affected}")
        changed = max(changed_at.values())
        after = group.hops(leaf)
        # Nothing moves before the FIB changes (a starting sidecar takes seconds), so the
        # window is the ``window`` seconds after the change.
        time.sleep(max(0.0, changed + window - read_spread / 2 - time.monotonic()))
        read_started = time.monotonic()
        counted_after = group.counters()
        read_spread = max(read_spread, time.monotonic() - read_started)
        measured = (read_started + time.monotonic()) / 2 - changed
        time.sleep(max(0.0, changed + SETTLE - time.monotonic()))
        # What the sidecars make of the event (the hold-down keeps a withdrawn member),
        # once a data-path-only member's route change crossed the spine, in both modes.
        holding = group.holding_group()
        member_route = group.member_route_at_leaf1(affected)
    finally:
        _release(holds)
        if kind == "sidecar" and event == "withdrawal":
            group.stop_sidecar(affected)
    by_family = {f: counted_after[f].minus(counted_before[f]) for f in FAMILIES}
    # Both families' tables together: the IPv4 underlay carries both.
    counted = {name: sum(c[name] for c in by_family.values()) for name in by_family[4]}
    families = [
        _family_row(
            shape,
            affected,
            json.loads(holds[f][1].read_text(encoding="utf-8"))["sessions"],
            (before[f], after[f]),
        )
        | {
            "family": f,
            "seconds_to_fib_change": round(changed_at[f] - started, 2),
            "counters": by_family[f],
        }
        for f in group.families
    ]
    return {
        "members": shape.members,
        "sidecars": len(shape.sidecars),
        "affected": f"m{affected}",
        "leaf": leaf,
        "mode": "rescue" if group.rescue else "control",
        "kind": kind,
        "event": event,
        "seconds_to_fib_change": round(changed - started, 2),
        "window_seconds": round(measured, 2) if group.rescue else None,
        "counter_read_seconds": round(read_spread, 2),
        "counters": counted,
        "underlay_per_rescued": (
            round(counted["underlay_sent"] / counted["rescued"], 2) if counted["rescued"] else None
        ),
        "sidecars_holding_group": holding,
        "member_route_at_leaf1": member_route,
        "families": families,
    }


def _family_row(
    shape: ScaleLab,
    affected: int,
    held: list[dict[str, Any]],
    hops: tuple[list[tuple[str, int]], list[tuple[str, int]]],
) -> dict[str, Any]:
    """One family's sessions of an event: where they were and which broke."""
    before, after = hops
    opened = [s for s in held if s["state"] != "failed"]
    broken = [s for s in opened if s["state"] == "broken"]
    name = f"m{affected}"
    same_leaf = {f"m{g}" for g in shape.on_leaf(shape.leaf_of(affected))}
    on_leaf = sum(1 for s in opened if s["server"] in same_leaf)
    return {
        "sessions": len(opened),
        "failed_to_open": len(held) - len(opened),
        "servers_answering": len({s["server"] for s in opened}),
        "on_affected": sum(1 for s in opened if s["server"] == name),
        "on_leaf": on_leaf,
        "broken_own": sum(1 for s in broken if s["server"] == name),
        "broken_innocent": sum(1 for s in broken if s["server"] != name),
        "broken_by_reason": dict(Counter(str(s["reason"]) for s in broken)),
        # Without rescue, every session on the leaf whose next hop changes breaks
        # (hash-threshold); the control measures it.
        "moved_expected_without_rescue": round(movement(before, after).moved * on_leaf, 1),
        "next_hops_before": len(before),
        "next_hops_after": len(after),
    }


def run_events(group: Group, size: Size, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every event on every kind of affected member, ``size.repeats`` times, in one mode."""
    shape = group.shape
    rows = []
    for repeat in range(size.repeats):
        for kind in kinds:
            leaf = shape.leaf_of(group.affected(kind))
            for event in EVENTS:
                rows.append(one_event(group, kind, event, size) | {"repeat": repeat})
                # Each event starts from the settled fabric the previous one left.
                group.wait_hops(shape.per_leaf - (event == "withdrawal"), leaf=leaf)
            if group.rescue:
                wait_for(group.learnt_everywhere, 120, "the sidecars never relearnt", 0.5)
    return rows


@contextmanager
def scale_lab(shape: ScaleLab, workdir: Path) -> Iterator[tuple[Lab, dict[str, float]]]:
    """The generated lab, deployed under a unique name, destroyed on the way out."""
    folder = workdir / shape.name
    topology = write(shape, folder)
    folder.chmod(0o755)
    lab = Lab.from_file(topology, name=unique_lab_name("sc"))
    started = time.monotonic()
    try:
        lab.deploy(wait_timeout=120)
        yield lab, {"lab_seconds": round(time.monotonic() - started, 1)}
    finally:
        lab.destroy()


def run_size(size: Size, workdir: Path) -> dict[str, Any]:
    """Every measurement at one group size."""
    shape = size.shape
    sizedir = workdir / shape.name
    sizedir.mkdir(parents=True)
    sizedir.chmod(0o755)
    with scale_lab(shape, sizedir) as (lab, timing):
        group = Group(lab, shape, sizedir, size.families)
        try:
            started = time.monotonic()
            group.start_services()
            group.install_data_paths()
            timing["data_paths_seconds"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            for member in shape.sidecars:
                group.start_sidecar(member)
            group.wait_hops(len(shape.sidecars), timeout=180)
            timing["sidecars_announced_seconds"] = round(time.monotonic() - started, 1)
            wait_for(group.learnt_everywhere, 120, "the sidecars never learnt every member", 0.5)
            timing["membership_learnt_seconds"] = round(time.monotonic() - started, 1)
            idle = group.idle_cost(size.idle_seconds)
            rows = run_events(group, size, KINDS)
            if size.control_kinds:
                started = time.monotonic()
                group.turn_rescue_off()
                timing["control_switch_seconds"] = round(time.monotonic() - started, 1)
                rows += run_events(group, size, size.control_kinds)
        finally:
            group.close()
    return {
        "members": shape.members,
        "leaves": shape.leaves,
        "sidecars": len(shape.sidecars),
        "data_path_only": len(shape.data_path_only),
        "sessions": size.sessions,
        "families": list(size.families),
        "repeats": size.repeats,
        "timing": timing,
        "idle_sidecar": idle,
        "events": rows,
    }


def run(sizes: tuple[Size, ...], workdir: Path) -> dict[str, Any]:
    workdir.chmod(0o755)
    return {"machine": machine(), "sizes": [run_size(size, workdir) for size in sizes]}


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _median_worst(values: list[float | None]) -> str:
    """The value all runs had, or the median and the worst (highest) over the repeats."""
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    if min(known) == max(known):
        return f"{known[0]:g}"
    return f"{statistics.median(known):g} (worst {max(known):g})"


def _range(values: list[Any]) -> str:
    """One run's value, or the lowest and highest over the repeats."""
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    low, high = min(known), max(known)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _groups(results: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Every (N, mode, affected kind, event)'s rows over the repeats, in run order."""
    for size in results["sizes"]:
        keys: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for row in size["events"]:
            keys.setdefault((row["mode"], row["kind"], row["event"]), []).append(row)
        yield from keys.values()


def _summary(rows: list[dict[str, Any]]) -> list[str]:
    """The main table's lines for a group's rows over the repeats: one per family. The
    event's own cells (both families together) are on its first family's line only."""
    first, c = rows[0], [r["counters"] for r in rows]
    routes = sorted({"yes" if r["member_route_at_leaf1"] else "no" for r in rows})
    event = (
        f"| {first['members']} | {'on' if first['mode'] == 'rescue' else '**off**'} "
        f"| {first['affected']} ({first['kind'].replace('_', '-')}, leaf{first['leaf']}) "
        f"| {first['event']} | {len(rows)} "
    )
    shared = (
        f"| {_median_worst([r['underlay_per_rescued'] for r in rows])} "
        f"| {_median_worst([x['budget_dropped'] for x in c])} "
        f"| {_range([r['sidecars_holding_group'] for r in rows])} of {first['sidecars']} "
        f"| {', '.join(routes)} | {_range([r['window_seconds'] for r in rows])} |"
    )
    lines = []
    for index, family in enumerate(f["family"] for f in first["families"]):
        fs = [f for r in rows for f in r["families"] if f["family"] == family]
        lines.append(
            f"{event}| IPv{family} "
            f"| {_range([f['sessions'] for f in fs])} ({_range([f['on_leaf'] for f in fs])}) "
            f"| {_range([f['moved_expected_without_rescue'] for f in fs])} "
            f"| {_median_worst([f['broken_own'] for f in fs])} "
            f"of {_range([f['on_affected'] for f in fs])} "
            f"| {_median_worst([f['broken_innocent'] for f in fs])} "
            f"| {_range([f['counters']['rescued'] for f in fs])} "
            + (shared if index == 0 else "| | | | | |")
        )
    return lines


def _breakdown(row: dict[str, Any]) -> str:
    """One row of the per-rescued-packet breakdown of the underlay (both families)."""
    c, rescued = row["counters"], row["counters"]["rescued"] or 1
    replicas = c["underlay_sent"] - c["forwarded_learnt"] - c["feedback_sent"]
    one_copy = (c["forwarded_learnt"] + c["feedback_sent"] + c["replicated"]) / rescued
    moved = sum(f["moved_expected_without_rescue"] for f in row["families"]) or 1
    return (
        f"| {row['members']} | {row['affected']} {row['event']} | {row['repeat'] + 1} "
        f"| {c['forwarded_learnt'] / rescued:.2f} "
        f"| {c['feedback_sent'] / rescued:.2f} | {replicas / rescued:.2f} | {one_copy:.2f} "
        f"| {_ratio(row['underlay_per_rescued'])} "
        f"| {c['rescued'] / moved / row['window_seconds']:.1f} "
        f"| {row['window_seconds']:g} ± {row['counter_read_seconds'] / 2:.1f} |"
    )


def render(results: dict[str, Any]) -> str:
    """The section as Markdown."""
    lines = [
        "## Rescue at group sizes 16 and 64",
        "",
        "Generated by `python -m tests.benchmarks.scale` (`make bench-scale`) from "
        "`scale.json`, which keeps every run's row. One rescue group behind several leaves "
        "of one spine (`containerlab/rescue64`, read `tests/benchmarks/scalelab.py`): "
        "leaf1's members run sidecars that learn the group from the fabric, the other "
        "leaves' members are data-path-only (`rescue install`, routes originated by their "
        "leaf). Events hit leaf1's last sidecar (its sidecar stops: withdrawal; starts "
        "again: addition) and leaf2's last data-path-only member (leaf2 stops routing to "
        "it and originating its member route; then starts again), each with fresh sessions "
        "pinging every 0.3 s, to the anycast address of each family (10.255.0.1, "
        "fd00:255::1), both families' sessions held through the same event. The lab is "
        "dual-stack over an IPv4 underlay: a moved IPv6 packet is rescued in VXLAN over "
        "IPv4 like an IPv4 one. With rescue **off** (the control, same lab, run after): no "
        "data path anywhere, sidecars without rescue, the same events. Underlay per "
        "rescued: every VXLAN packet all members sent in the window after the event (blind "
        "copies count once per replica, feedback included) / rescued packets owners "
        "accepted, both families together (the underlay's counter cannot tell them apart); "
        "*rescued* is each family's own. Target: 0 broken, at most 2 underlay packets per "
        "rescued packet.",
        "",
        "Where the runs of a line differ, counts of broken sessions, the ratio and budget "
        "drops show the median and the worst run; sessions, rescued packets and the rest "
        "show the lowest-highest. A control (rescue off) event has no window: its sessions "
        f"are held {SETTLE:g} s after the FIB change. *Sidecars holding the group*: sidecars whose "
        "data path held every member at the end of the event (a withdrawn member is held "
        "down); *member route at leaf1*: whether the affected member's member route was "
        "there then. An event has one line per family; the cells from *underlay per "
        "rescued* on are the event's (all families) and are on its first line only.",
        "",
        "| N | rescue | affected | event | runs | family | sessions (on its leaf) "
        "| moved w/o rescue (expected) | broken own of on affected | broken innocent "
        "| rescued | underlay per rescued | budget drops | sidecars holding the group "
        "| member route at leaf1 | window s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [line for rows in _groups(results) for line in _summary(rows)]
    lines += [
        "",
        "Where the underlay packets go, per rescued packet (both families), every run with "
        "rescue on: copies to a learnt owner "
        "(one each), feedback (an owner's confirmations, one per flow per second after a "
        "burst of 3) and the rest: blind replicas (every peer's copy of a packet nobody "
        "here knew) and any other copy a data path sends (a targeted first copy's, once "
        "there is one). *One copy per blind packet* recomputes the ratio from the same counters "
        "as if each blind packet had gone to one member (a targeted first copy that "
        "always hits the owner): a model, not a measurement. *Packets per moved session* "
        "is rescued packets / expected moved sessions (both families) / window: how fast "
        "the sessions "
        "sent, which the ratio depends on (blind replicas are paid once per flow, the "
        "rest per packet). Members' counters are read in parallel, not at one instant: "
        "the window is give or take half the read's spread.",
        "",
        "| N | event | run | learnt copies | feedback | blind replicas and other "
        "| one copy per blind packet (model) | underlay per rescued "
        "| packets per moved session per s | window s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        lines += [_breakdown(row) for row in size["events"] if row["mode"] == "rescue"]
    lines += [
        "",
        "| N | leaves | sidecars | data-path-only | lab up s | data paths s "
        "| sidecars announced s | every member learnt s | rescue off s "
        "| sidecar idle RSS MiB (median) | sidecar idle CPU % (median; all) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        t, idle = size["timing"], size["idle_sidecar"]
        lines.append(
            f"| {size['members']} | {size['leaves']} | {size['sidecars']} "
            f"| {size['data_path_only']} | {t['lab_seconds']:g} | {t['data_paths_seconds']:g} "
            f"| {t['sidecars_announced_seconds']:g} | {t['membership_learnt_seconds']:g} "
            f"| {t.get('control_switch_seconds', '-')} "
            f"| {idle['rss_mib_median']:g} | {idle['cpu_percent_median']:g}; "
            f"{idle['cpu_percent_total']:g} |"
        )
    return "\n".join(lines) + "\n"


def _numbers(text: str) -> set[int]:
    """``16,64`` as {16, 64}; empty for anything that is not a comma-separated list."""
    try:
        return {int(n) for n in text.split(",")}
    except ValueError:
        return set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", default="16,64", help="group sizes to run: 16, 64")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of every event per size and mode, all kept in scale.json (default 1)",
    )
    parser.add_argument(
        "--families",
        default="4,6",
        help="address families the client holds sessions in, each with the size's "
        "sessions, through the same events: 4, 6 or 4,6 (default 4,6)",
    )
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    # Every event's sessions come from a client address of their own (240 of them).
    if not 1 <= args.repeats <= MAX_REPEATS:
        parser.error(f"--repeats must be 1 to {MAX_REPEATS}, not {args.repeats}")
    wanted = _numbers(args.sizes)
    if not wanted or not wanted <= {s.shape.members for s in FULL}:
        parser.error(f"--sizes takes 16, 64 or 16,64, not {args.sizes!r}")
    families = _numbers(args.families)
    if not families or not families <= set(FAMILIES):
        parser.error(f"--families takes 4, 6 or 4,6, not {args.families!r}")
    sizes = tuple(
        replace(s, repeats=args.repeats, families=tuple(sorted(families)))
        for s in (QUICK if args.quick else FULL)
        if s.shape.members in wanted
    )
    with tempfile.TemporaryDirectory(prefix="anycast-scale-") as tmp:
        results = run(sizes, Path(tmp))
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "scale.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.docs / "scale.md").write_text(render(results), encoding="utf-8")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
