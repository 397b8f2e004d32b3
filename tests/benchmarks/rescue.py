"""Flow rescue measured: PMTUD, throughput and CPU of a rescued flow, time to reset orphans.

Runs on the rescue test lab (tests/integration/rescue/rescue.clab.yml: three servers
behind one ECMP router r, a client behind router q), rescue installed with the CLI:

- **pmtud**: q's link to the client drops to 1400 bytes; ``downloads`` large transfers
  per family, rescue off and on; completed and hung ones per server.
- **throughput**: iperf3 from the client to the anycast address, served by s3 only:
  *direct* (r routes to s3) without rescue and with rescue installed (the cost every
  packet pays for the ownership check), and *rescued* (the flow starts on s3, then r
  routes to s1 only, which hands every packet to s3 over the overlay). Upload (the
  client's data is rescued) and download (``-R``: only its ACKs are), as fast as they go
  and paced at 2 Gbit/s (upload). Throughput from
  iperf3's own intervals after the switch; CPU is the whole machine's busy time from
  /proc/stat per GB moved (the namespaces share one kernel; other work on the host
  counts too, so read it as an upper bound). Copies per rescued packet from the
  counters.
- **flood**: random-tuple bare ACKs from the client to the anycast address
  (``ackflood``), with the group configured at N = 4 and 16: s1..s3 and N - 3 members
  that are addresses with no host (as data-path-only members would be for these
  packets: nobody owns a flood packet, so nobody answers). Underlay packets (every VXLAN
  packet the servers sent, each replica counted: ``underlay_sent``) per flood packet,
  blind copies dropped over the budget, whole-host CPU per 1,000 flood packets (the
  sender's own CPU taken out), and then the same flood while the client holds long-lived
  sessions and s3 is withdrawn: sessions broken.
- **orphans**: the client holds sessions; s3 dies (its link goes down and r stops
  routing to it). Time from the event until each of s3's sessions sees its reset,
  rescue off and on; and with rescue on after s3's sessions were first rescued and
  learnt (s3 withdrawn, then dead 4 s later: the learnt owner must time out first).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.benchmarks.common import summary
from tests.benchmarks.hostprofile import busy_between, busy_jiffies, cpu_ticks, start_record
from tests.integration.rescue.rescuelab import (
    ANYCAST,
    MEMBERS,
    SERVERS,
    RescueLab,
    peer_total,
    rescue_lab,
    total,
    write_config,
)
from tests.lablib import REPO_ROOT

CLIENT = "10.0.100.2"

IPERF_PORT = 5201
RATE = "2G"
"""The fixed rate of the paced runs: well below what the lab's shared cores carry."""


def pmtud(lab: RescueLab, count: int, size: int) -> list[dict[str, Any]]:
    """Large downloads through the 1400-byte link, per family, rescue off then on."""
    rows = []
    try:
        lab.run("q", "ip", "link", "set", "eth1", "mtu", "1400")
        for rescue in (False, True):
            if rescue:
                lab.install_all()
            else:
                lab.remove_all()
            for family in (4, 6):
                lab.flush_pmtu()
                result = lab.downloads(family, count=count, size=size, timeout=10)
                rows.append({"family": family, "rescue": rescue, **result})
    finally:
        lab.run("q", "ip", "link", "set", "eth1", "mtu", "1500")
        lab.install_all()
    return rows


def iperf_run(  # noqa: PLR0913  # keyword-only knobs of one benchmark run
    lab: RescueLab,
    seconds: float,
    reverse: bool,
    switch_after: float | None,
    rate: str | None = None,
    *,
    profile: Path | None = None,
    pin: bool = False,
    switch: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One iperf3 run to s3; with ``switch_after``, r moves the flow to s1 mid-run (or
    ``switch`` moves it elsewhere).

    With ``pin``, the sending iperf3 runs on CPU 0 and the receiving one on CPU 1
    (``taskset``), and the window also has CPU 0's busy fraction and busy seconds per GB:
    in this one-host lab a flow's forwarding runs in the softirq of the CPU that sent it
    (veth hands each packet to that CPU's backlog), so CPU 0 carries the whole path up
    to the receiving socket.

    Besides the whole run's CPU per GB, the *window* figures are the host's CPU over the
    whole seconds that are measured (after the switch, without the first second's slow
    start), and with ``profile`` a ``perf record -a`` of that window goes to that file."""
    # The sender is the client, or the server with -R.
    sender_cpu, receiver_cpu = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pin else ([], [])
    server_cpu, client_cpu = (sender_cpu, receiver_cpu) if reverse else (receiver_cpu, sender_cpu)
    server = lab.lab.popen(
        "s3",
        [*server_cpu, "iperf3", "-s", "-1", "-B", ANYCAST[4], "-p", str(IPERF_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    # Read before the client starts: the rescue CLI takes most of a second per server, and
    # the switch below must land at its time in the run, not after these reads.
    counters_before = lab.counters()
    argv = ["iperf3", "-c", ANYCAST[4], "-p", str(IPERF_PORT), "-t", str(seconds), "-J"]
    extra = (["-R"] if reverse else []) + (["-b", rate] if rate else [])
    client = lab.lab.popen(
        "client", [*client_cpu, *argv, *extra], stdout=subprocess.PIPE, text=True
    )
    started = time.monotonic()
    busy_before = busy_jiffies()
    skip = 1  # iperf3's first interval includes the connection's slow start
    if switch_after is not None:
        time.sleep(max(0.0, started + switch_after - time.monotonic()))
        switch() if switch is not None else lab.set_paths(["s1"])
        # Only the intervals wholly after the switch measure the rescued path.
        skip = int(time.monotonic() - started) + 1
    window = _window(started, skip, seconds, profile)
    out, _ = client.communicate(timeout=seconds + 30)
    busy = busy_jiffies() - busy_before
    server.wait(timeout=10)
    # iperf3 -J puts its own errors in the report; no report at all means it never ran.
    report: dict[str, Any] = (
        json.loads(out) if out.strip() else {"error": "no report (is iperf3 installed?)"}
    )
    if client.returncode != 0 or "error" in report:
        raise RuntimeError(f"iperf3 client exited {client.returncode}: {report.get('error')}")
    counters_after = lab.counters()
    intervals = report["intervals"]
    counted = intervals[skip:]
    rates = [i["sum"]["bits_per_second"] for i in counted]
    if not rates:
        raise RuntimeError(f"iperf3 ran {len(intervals)} intervals, none after interval {skip}")
    moved = report["end"]["sum_received"]["bytes"]
    window_gb = sum(i["sum"]["bytes"] for i in counted) / 1e9
    # Busy CPU seconds per wall second of the window, times iperf3's own seconds of the
    # counted intervals: the two clocks' windows differ by the client's start-up only.
    counted_seconds = sum(i["sum"]["seconds"] for i in counted)
    window_cpu = window["busy_cpu_seconds"] / window["wall_seconds"] * counted_seconds
    sender = (
        {
            "sender_cpu_busy": window["cpu_busy"][0],
            "sender_cpu_seconds_per_gb": (
                window["cpu_busy"][0] * counted_seconds / window_gb if window_gb else None
            ),
        }
        if pin
        else {}
    )
    rescued = peer_total(counters_after, "received") - peer_total(counters_before, "received")
    copies = peer_total(counters_after, "forwarded") - peer_total(counters_before, "forwarded")
    # The flow directory's copies to one member (queries, forwards) count too.
    copies += sum(
        total(counters_after, name) - total(counters_before, name)
        for name in ("dir_queries", "dir_forwarded")
    )
    return {
        "gbit_per_s": statistics.median(rates) / 1e9,
        "intervals": len(rates),
        "bytes": moved,
        # /proc/stat counts in ticks of 1/USER_HZ = 10 ms: a paced run can use less than
        # one tick per GB, so the row also says how fine the figure is.
        "cpu_ticks": busy,
        "cpu_seconds_per_gb": busy / 100 / (moved / 1e9),
        "cpu_tick_per_gb": 1 / 100 / (moved / 1e9),
        "rescued_packets": rescued,
        "copies_per_rescued": copies / rescued if rescued else None,
        # The sender's, whichever end it is (iperf3 -R reports the server's): drops.
        "retransmits": report["end"]["sum_sent"].get("retransmits"),
        "window": {
            **window,
            "gb": window_gb,
            "cpu_seconds_per_gb": window_cpu / window_gb if window_gb else None,
            **sender,
        },
    }


def _window(started: float, skip: int, seconds: float, profile: Path | None) -> dict[str, Any]:
    """The host's CPU from ``skip`` to ``seconds`` after ``started`` (all inside the
    transfer: iperf3 starts its clock after ``started``), perf recording it if asked."""
    time.sleep(max(0.0, started + skip - time.monotonic()))
    before = cpu_ticks()
    # perf's own start-up and wind-down land inside the window, not past the transfer.
    record = start_record(profile, seconds - skip - 0.5) if profile else None
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    window = busy_between(before, cpu_ticks())
    if record is not None and record.wait(timeout=30) != 0:
        raise RuntimeError(f"perf record exited {record.returncode} (is linux-perf installed?)")
    return window


def throughput(lab: RescueLab, seconds: float, repeats: int) -> list[dict[str, Any]]:
    """Direct (rescue off / on) and rescued iperf3 runs, upload and download, as fast as
    they go and at a fixed 2 Gbit/s (below what this host's CPUs cap)."""
    rows = []
    cases = (("direct", False), ("direct", True), ("rescued", True))
    for reverse, rate in ((False, None), (True, None), (False, RATE)):
        for path, rescue in cases:
            runs = []
            for _ in range(repeats):
                if rescue:
                    lab.install_all()
                else:
                    lab.remove_all()
                lab.set_paths(["s3"])
                switch = 2.0 if path == "rescued" else None
                runs.append(iperf_run(lab, seconds, reverse, switch, rate))
            best = max(runs, key=lambda r: r["gbit_per_s"])
            rows.append(
                {
                    "direction": "download" if reverse else "upload",
                    "rate": rate or "max",
                    "path": path,
                    "rescue": rescue,
                    "runs": runs,
                    "gbit_per_s": statistics.median(r["gbit_per_s"] for r in runs),
                    "best_gbit_per_s": best["gbit_per_s"],
                    "cpu_seconds_per_gb": statistics.median(r["cpu_seconds_per_gb"] for r in runs),
                    "cpu_tick_per_gb": max(r["cpu_tick_per_gb"] for r in runs),
                    "copies_per_rescued": best["copies_per_rescued"] if path == "rescued" else None,
                }
            )
    lab.set_paths(SERVERS)
    lab.install_all()
    return rows


def _reset_times(summary_: dict[str, Any], event_at: float) -> list[float]:
    return sorted(
        s["at"] - event_at
        for s in summary_["broken_sessions"]
        if s["server"] == "s3" and s["reason"] == "reset"
    )


def orphans(lab: RescueLab, sessions: int) -> list[dict[str, Any]]:
    """Time until the client sees the reset of a dead server's sessions."""
    rows = []
    for case in ("rescue off", "rescue on", "rescue on, learnt first"):
        lab.reset()
        if case == "rescue off":
            lab.remove_all()
        event_at = 0.0

        def die(case: str = case) -> None:
            nonlocal event_at
            if case.endswith("learnt first"):
                lab.set_paths(["s1", "s2"])  # withdrawn: rescued and learnt
                time.sleep(4)
            event_at = time.time()
            lab.isolate("s3")
            lab.set_paths(["s1", "s2"])

        held = lab.hold(4, sessions, die, settle=15, timeout=40, tag="orphans")
        times = _reset_times(held, event_at)
        rows.append(
            {
                "case": case,
                "on_dead_server": held["started_on"].get("s3", 0),
                "reset": len(times),
                "broken_elsewhere": held["broken"] - held["broken_by_server"].get("s3", 0),
                "seconds_to_reset": summary(times),
            }
        )
    lab.reset()
    return rows


SPREAD = "100.64.0.0/10"
"""The many-source flood's addresses: 16,384 client /24s (the per-source meter's unit)."""


def _flood(
    lab: RescueLab, rate: int, seconds: float, source: str = CLIENT
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.benchmarks.ackflood", source, ANYCAST[4], "8080"]
    return lab.lab.popen(
        "client",
        [*argv, str(rate), str(seconds)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _counted(lab: RescueLab, before: dict[str, Any]) -> dict[str, int]:
    after = lab.counters()
    names = ("underlay_sent", "replicated", "blind_limited", "blind_source_limited")
    return {name: total(after, name) - total(before, name) for name in (*names, "blind_refused")}


def _blind_per_second(
    before: dict[str, Any], after: dict[str, Any], members: int, seconds: float
) -> dict[str, float]:
    """Blind copies (underlay packets: each replicated packet costs N - 1) per second of
    the busiest server, and what its budget allows over that time (rate, plus the burst
    spread over the flood, the packet limit rounded down as the renderer does it)."""
    fanout = members - 1
    busiest = max(
        int(after[node]["replicated"]["packets"]) - int(before[node]["replicated"]["packets"])
        for node in SERVERS
    )
    rate = max(1, BLIND_RATE // fanout) * fanout
    burst = max(1, BLIND_BURST // fanout) * fanout
    return {
        "blind_copies_per_second_max": round(busiest * fanout / seconds, 1),
        "blind_rate": rate,
        "blind_allowed_per_second": round(rate + burst / seconds, 1),
    }


BLIND_RATE, BLIND_BURST = 1000, 4000
"""The default ``blind_copy_rate`` / ``blind_copy_burst`` the flood runs with."""


def flood(
    lab: RescueLab,
    rate: int,
    seconds: float,
    sizes: tuple[int, ...],
    sessions: int,
    many_sizes: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """Underlay cost and CPU of an ACK flood, then sessions through a withdrawal under it:
    from the client's address at each of ``sizes``, then from random addresses in
    :data:`SPREAD` at each of ``many_sizes``."""
    rows = []
    for spread, members in [("one", n) for n in sizes] + [("many", n) for n in many_sizes]:
        rows.append(_flood_row(lab, rate, seconds, members, sessions, spread))
        lab.reset()
    return rows


def _flood_row(
    lab: RescueLab, rate: int, seconds: float, members: int, sessions: int, spread: str
) -> dict[str, Any]:
    source = SPREAD if spread == "many" else CLIENT
    fake = [f"10.200.{i // 250}.{i % 250 + 1}" for i in range(members - len(MEMBERS))]
    config = write_config(lab.workdir / f"flood{members}.yaml", members=[*MEMBERS, *fake])
    lab.install_all(config)
    before, busy = lab.counters(), busy_jiffies()
    sender = _flood(lab, rate, seconds, source)
    out, _ = sender.communicate(timeout=seconds + 60)
    ticks = busy_jiffies() - busy
    sent = json.loads(out)
    after = lab.counters()
    counted = _counted(lab, before)
    host_cpu = ticks / 100 - float(sent["cpu_seconds"])
    blind = _blind_per_second(before, after, members, float(sent["seconds"]))
    # The same flood while sessions are held and s3 is withdrawn halfway.
    sender = _flood(lab, rate, seconds, source)
    held = lab.hold(
        4, sessions, lambda: lab.set_paths(["s1", "s2"]), settle=seconds / 2, timeout=15
    )
    sender.communicate(timeout=seconds + 60)
    return {
        "sources": spread,
        "members": members,
        "rate": rate,
        "flood_sent": int(sent["sent"]),
        "flood_seconds": float(sent["seconds"]),
        **counted,
        "underlay_per_flood_packet": round(counted["underlay_sent"] / max(1, int(sent["sent"])), 3),
        "host_cpu_seconds_per_1000": round(
            1000 * max(0.0, host_cpu) / max(1, int(sent["sent"])), 4
        ),
        **blind,
        "sessions": held["total"],
        "broken": held["broken"],
        "broken_by_reason": held["broken_by_reason"],
    }


@dataclass(frozen=True, slots=True)
class RescueSizes:
    """How big each rescue measurement runs."""

    downloads: int
    iperf_seconds: float
    iperf_repeats: int
    orphan_sessions: int
    flood_rate: int = 20_000
    flood_seconds: float = 10
    flood_sessions: int = 100
    many_source_sizes: tuple[int, ...] = (4, 16)


FULL = RescueSizes(downloads=60, iperf_seconds=10, iperf_repeats=3, orphan_sessions=150)
QUICK = RescueSizes(
    downloads=30, iperf_seconds=6, iperf_repeats=1, orphan_sessions=60, flood_seconds=6
)
TINY = RescueSizes(
    downloads=6,
    iperf_seconds=5,
    iperf_repeats=1,
    # The fabric hashes each session to one of 3 servers: with 12, none lands on the one
    # that dies in 0.8% of cases (seen once); with 32, in 2.3e-6.
    orphan_sessions=32,
    flood_rate=2000,
    flood_seconds=3,
    flood_sessions=12,
    many_source_sizes=(16,),
)
"""For the smoke test: the code runs, the numbers mean little."""


def run(workdir: Path, quick: bool, sizes: RescueSizes | None = None) -> dict[str, Any]:
    """Every rescue measurement on one deployment of the rescue lab."""
    chosen = sizes or (QUICK if quick else FULL)
    workdir.chmod(0o755)
    with rescue_lab(workdir) as lab:
        lab.reset()
        return {
            "pmtud": pmtud(lab, count=chosen.downloads, size=1_000_000),
            "throughput": throughput(
                lab, seconds=chosen.iperf_seconds, repeats=chosen.iperf_repeats
            ),
            "orphans": orphans(lab, sessions=chosen.orphan_sessions),
            "flood": flood(
                lab,
                rate=chosen.flood_rate,
                seconds=chosen.flood_seconds,
                sizes=(4, 16),
                sessions=chosen.flood_sessions,
                many_sizes=chosen.many_source_sizes,
            ),
        }


def main() -> int:
    """``python -m tests.benchmarks.rescue [--quick]``: print the JSON."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="anycast-rescue-") as tmp:
        print(json.dumps(run(Path(tmp), "--quick" in sys.argv), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
