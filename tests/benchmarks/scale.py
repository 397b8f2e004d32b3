"""§4 and §5 at group sizes 16 and 64: one rescue group behind several leaves.

Runs on the scale lab (``tests.benchmarks.scalelab``; ``containerlab/rescue64`` at N = 64,
4 leaves x 16; N = 16 is 2 leaves x 8). leaf1's members run real sidecars that learn the
group from the fabric; the other leaves' members are data-path-only (``rescue install``
with the whole group as static members), their anycast and member routes originated by
their leaf. Every member serves the lab TCP service on the anycast address.

For each N, events on two *affected* members, each event with its own fresh sessions
from the client (one ping every 0.3 s each way, so with ACKs several packets a second per
session):

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

Per event: sessions broken, on the affected member (*own*) and elsewhere (*innocent*);
and over the ``window`` seconds after the event, every member's rescue counters read
straight from its nftables table: ``underlay_sent`` (every VXLAN packet a member sent,
each replica of a blind copy and every feedback packet counted) summed over all members,
divided by the rescued packets that owners accepted (the per-peer ``received``). The
issue's target is at most 2 underlay packets per rescued packet; blind copies go to
all N - 1 members, so this measures whatever data path is installed (the counters are
the same whichever rules produce them). A control event has no window (there are no
counters): its sessions are held ``SETTLE`` seconds after the FIB change.

Also per N: how long the lab and the group take to come up, how long the sidecars take
to learn every member, and one sidecar's idle RSS and CPU (sidecar + ExaBGP), which is
what decided how many real sidecars this 2-core machine carries.

    sudo .venv/bin/python -m tests.benchmarks.scale [--quick] [--sizes 16,64] [--repeats K]
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
    kernel_nexthops,
    machine,
    start_hold,
    tree_cpu,
    tree_rss_bytes,
    wait_for,
)
from tests.benchmarks.hashmath import movement
from tests.benchmarks.scalelab import (
    ANYCAST,
    COMMUNITY,
    ScaleLab,
    leaf_address,
    leaf_as,
    member_address,
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

    @property
    def shape(self) -> ScaleLab:
        return ScaleLab(self.leaves, self.per_leaf)


FULL = (Size(2, 8, sessions=320), Size(4, 16, sessions=640))
QUICK = (Size(2, 8, sessions=160), Size(4, 16, sessions=320))
TINY = Size(2, 4, sessions=96, window=SETTLE, idle_seconds=2.0, control_kinds=("sidecar",))
"""For the smoke test: the code runs, the numbers mean little. Its control runs only the
sidecar's events, which are enough to show that sessions break without rescue."""


def _sidecar_config(member: int) -> dict[str, Any]:
    """A leaf1 member's sidecar: the anycast prefix, membership learnt from the fabric."""
    return {
        "bgp": {
            "local_as": member_as(member),
            "router_id": member_address(member),
            "hold_time": 9,
            "peers": [{"address": leaf_address(member), "peer_as": leaf_as(1)}],
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
            {
                "prefix": f"{ANYCAST}/32",
                "services": ["web"],
                "dampening": {"enabled": False},
            }
        ],
        "allowed_prefixes": ["10.255.0.0/24"],
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
    config["bgp"]["peers"] = [{"address": leaf_address(member), "peer_as": peer_as}]
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


class Group:
    """The members of one scale lab: services, data paths, sidecars."""

    def __init__(self, lab: Lab, shape: ScaleLab, workdir: Path) -> None:
        self.lab, self.shape, self.workdir = lab, shape, workdir
        self.services = {g: LabService(lab, f"m{g}", workdir) for g in range(1, shape.members + 1)}
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

    def leaf_hops(self, leaf: int) -> list[tuple[str, int]]:
        """The leaf's next hops for the anycast prefix that are its own members."""
        return [h for h in kernel_nexthops(self.lab, f"leaf{leaf}") if h[0].startswith("10.2.")]

    def wait_hops(self, count: int, timeout: float = 60, leaf: int = 1) -> None:
        wait_for(
            lambda: len(self.leaf_hops(leaf)) == count,
            timeout,
            f"leaf{leaf} never reached {count} member next hops",
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

    def counters(self) -> Totals:
        """Every member's rescue counters, read in parallel straight from nftables."""

        def read(member: int) -> RescueCounters:
            out = self.lab.run(
                f"m{member}",
                ["nft", "-j", "list", "counters", "table", "ip", "anycast_rescue"],
                check=False,
            ).stdout
            return parse_counters([json.loads(out)] if out.strip() else [])

        return Totals.of(list(self._pool.map(read, range(1, self.shape.members + 1))))

    def abort_sessions(self) -> None:
        for service in self.services.values():
            service.abort_sessions()

    def fresh_source(self) -> str:
        """A client address no earlier run used: no 4-tuple is ever reused."""
        address = f"10.3.0.{next(self._sources)}"
        self.lab.run("client", ["ip", "addr", "add", f"{address}/24", "dev", "eth1"])
        return address

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


def one_event(group: Group, kind: str, event: str, size: Size) -> dict[str, Any]:
    """Hold sessions, withdraw or add the affected member, count over the window."""
    shape = group.shape
    affected = group.affected(kind)
    leaf = shape.leaf_of(affected)
    # The control has no counters to read: its sessions only need to notice.
    window = size.window if group.rescue else 0.0
    group.abort_sessions()
    time.sleep(0.5)
    hold, result_path = start_hold(
        group.lab,
        f"{ANYCAST}:{SERVICE_PORT}",
        size.sessions,
        group.fresh_source(),
        group.workdir,
        f"{shape.members}-{'rescue' if group.rescue else 'control'}-{kind}-{event}-"
        f"{next(group.events)}",
    )
    before = group.leaf_hops(leaf)
    read_started = time.monotonic()
    counted_before = group.counters()
    # The members are read in parallel but not at one instant: the after-read starts
    # half this early, so that each member's window is ``window`` give or take half.
    read_spread = time.monotonic() - read_started
    started = time.monotonic()
    try:
        _act(group, kind, event, affected)
        wait_for(
            lambda: group.leaf_hops(leaf) != before,
            60,
            f"{event} of m{affected}: leaf{leaf}'s next hops never changed",
            interval=0.05,
        )
        changed = time.monotonic()
        after = group.leaf_hops(leaf)
        # Nothing moves before the FIB changes (a starting sidecar takes seconds), so the
        # window is the ``window`` seconds after the change.
        time.sleep(max(0.0, changed + window - read_spread / 2 - time.monotonic()))
        read_started = time.monotonic()
        counted = group.counters().minus(counted_before)
        read_spread = max(read_spread, time.monotonic() - read_started)
        measured = (read_started + time.monotonic()) / 2 - changed
        time.sleep(max(0.0, changed + SETTLE - time.monotonic()))
        # What the sidecars make of the event (the hold-down keeps a withdrawn member),
        # once a data-path-only member's route change crossed the spine, in both modes.
        holding = group.holding_group()
        member_route = group.member_route_at_leaf1(affected)
    finally:
        hold.send_signal(signal.SIGTERM)
        hold.wait(timeout=30)
        if kind == "sidecar" and event == "withdrawal":
            group.stop_sidecar(affected)
    held = json.loads(result_path.read_text(encoding="utf-8"))["sessions"]
    return _row(shape, affected, held, before, after) | {
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
    }


def _row(
    shape: ScaleLab,
    affected: int,
    held: list[dict[str, Any]],
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
) -> dict[str, Any]:
    opened = [s for s in held if s["state"] != "failed"]
    broken = [s for s in opened if s["state"] == "broken"]
    name = f"m{affected}"
    leaf = shape.leaf_of(affected)
    same_leaf = {f"m{g}" for g in shape.on_leaf(leaf)}
    on_leaf = sum(1 for s in opened if s["server"] in same_leaf)
    return {
        "members": shape.members,
        "sidecars": len(shape.sidecars),
        "affected": name,
        "leaf": leaf,
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
        group = Group(lab, shape, sizedir)
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


def _summary(rows: list[dict[str, Any]]) -> str:
    """One line of the main table: a group's rows over the repeats."""
    first, c = rows[0], [r["counters"] for r in rows]
    routes = sorted({"yes" if r["member_route_at_leaf1"] else "no" for r in rows})
    return (
        f"| {first['members']} | {'on' if first['mode'] == 'rescue' else '**off**'} "
        f"| {first['affected']} ({first['kind'].replace('_', '-')}, leaf{first['leaf']}) "
        f"| {first['event']} | {len(rows)} "
        f"| {_range([r['sessions'] for r in rows])} ({_range([r['on_leaf'] for r in rows])}) "
        f"| {_range([r['moved_expected_without_rescue'] for r in rows])} "
        f"| {_median_worst([r['broken_own'] for r in rows])} "
        f"of {_range([r['on_affected'] for r in rows])} "
        f"| {_median_worst([r['broken_innocent'] for r in rows])} "
        f"| {_range([x['rescued'] for x in c])} "
        f"| {_median_worst([r['underlay_per_rescued'] for r in rows])} "
        f"| {_median_worst([x['budget_dropped'] for x in c])} "
        f"| {_range([r['sidecars_holding_group'] for r in rows])} of {first['sidecars']} "
        f"| {', '.join(routes)} | {_range([r['window_seconds'] for r in rows])} |"
    )


def _breakdown(row: dict[str, Any]) -> str:
    """One row of the per-rescued-packet breakdown of the underlay."""
    c, rescued = row["counters"], row["counters"]["rescued"] or 1
    replicas = c["underlay_sent"] - c["forwarded_learnt"] - c["feedback_sent"]
    one_copy = (c["forwarded_learnt"] + c["feedback_sent"] + c["replicated"]) / rescued
    moved = row["moved_expected_without_rescue"] or 1
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
        "pinging every 0.3 s. With rescue **off** (the control, same lab, run after): no "
        "data path anywhere, sidecars without rescue, the same events. Underlay per "
        "rescued: every VXLAN packet all members sent in the window after the event (blind "
        "copies count once per replica, feedback included) / rescued packets owners "
        "accepted. Target: 0 broken, at most 2 underlay packets per rescued packet.",
        "",
        "Where the runs of a line differ, counts of broken sessions, the ratio and budget "
        "drops show the median and the worst run; sessions, rescued packets and the rest "
        "show the lowest-highest. A control (rescue off) event has no window: its sessions "
        f"are held {SETTLE:g} s after the FIB change. *Sidecars holding the group*: sidecars whose "
        "data path held every member at the end of the event (a withdrawn member is held "
        "down); *member route at leaf1*: whether the affected member's member route was "
        "there then.",
        "",
        "| N | rescue | affected | event | runs | sessions (on its leaf) "
        "| moved w/o rescue (expected) | broken own of on affected | broken innocent "
        "| rescued | underlay per rescued | budget drops | sidecars holding the group "
        "| member route at leaf1 | window s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_summary(rows) for rows in _groups(results)]
    lines += [
        "",
        "Where the underlay packets go, per rescued packet, every run with rescue on: "
        "copies to a learnt owner "
        "(one each), feedback (an owner's confirmations, one per flow per second after a "
        "burst of 3) and the rest: blind replicas (every peer's copy of a packet nobody "
        "here knew) and any other copy a data path sends (a targeted first copy's, once "
        "there is one). *One copy per blind packet* recomputes the ratio from the same counters "
        "as if each blind packet had gone to one member (a targeted first copy that "
        "always hits the owner): a model, not a measurement. *Packets per moved session* "
        "is rescued packets / expected moved sessions / window: how fast the sessions "
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
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    # Every event's sessions come from a client address of their own (240 of them).
    if not 1 <= args.repeats <= MAX_REPEATS:
        parser.error(f"--repeats must be 1 to {MAX_REPEATS}, not {args.repeats}")
    try:
        wanted = {int(n) for n in args.sizes.split(",")}
    except ValueError:
        wanted = set()
    if not wanted or not wanted <= {s.shape.members for s in FULL}:
        parser.error(f"--sizes takes 16, 64 or 16,64, not {args.sizes!r}")
    sizes = tuple(
        replace(s, repeats=args.repeats)
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
