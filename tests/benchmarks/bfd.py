"""BFD benchmark: how fast a dead server or a hung sidecar leaves the leaf's FIB.

    sudo .venv/bin/python -m tests.benchmarks.bfd [--quick] [--docs DIR]

Runs on its own two-node lab (tests/integration/bfd/sidecar.clab.yml: leaf1 with FRR
8.4 bfdd + bgpd, srv1 with a real sidecar and the lab service), which is the leaf-server
hop of the leaf/spine lab with nothing else running. Sections:

- whole-server death: every packet on srv1's link dropped by nftables inside srv1 (the
  link stays up), time until leaf1's kernel route to the anycast prefix loses srv1; per
  BFD interval (both sides set alike through a Poll Sequence, no restart), and without
  BFD (the 9 s hold timer);
- no false alarm: both cores saturated by busy processes for a while, BFD sessions that
  went down counted on the leaf (bfdd's own counters);
- hung sidecar: SIGSTOP, time until leaf1's FIB drops srv1.

Writes ``bfd.json`` and ``bfd.md`` into ``docs/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from anycast_announcer.netlab.plan import BgpWait
from tests.benchmarks import bfd_jitter
from tests.benchmarks.common import machine
from tests.integration.sidecars import (
    ANYCAST_V4,
    Service,
    Sidecar,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import REPO_ROOT, deployed, wait_until

TOPOLOGY = REPO_ROOT / "tests" / "integration" / "bfd" / "sidecar.clab.yml"
SERVER = "10.0.1.2"
DROP_TABLE = "anycast_bench_drop"


@dataclass(frozen=True)
class Sizes:
    trials: int
    load_seconds: float
    hung_trials: int
    intervals: tuple[float, ...] = (0.3, 0.1, 0.05)
    hold_trials: int = 3
    """Trials against the 9 s hold timer (each costs ~25 s of recovery)."""
    jitter_seconds: float = 20.0
    jitter_lags: tuple[float, ...] = bfd_jitter.LAGS


FULL = Sizes(trials=10, load_seconds=300, hung_trials=10)
QUICK = Sizes(trials=3, load_seconds=30, hung_trials=3, hold_trials=1, jitter_seconds=5)
TINY = Sizes(
    trials=1,
    load_seconds=2,
    hung_trials=1,
    intervals=(0.3,),
    hold_trials=0,
    jitter_seconds=1,
    jitter_lags=(0.0, 0.3),
)


def _config(interval: float | None) -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["bgp"]["hold_time"] = 9
    if interval is not None:  # the IPv4 session is the one measured
        for peer in config["bgp"]["peers"]:
            peer["bfd"] = {"min_tx": interval, "min_rx": interval, "multiplier": 3}
    return config


def _leaf_profile(lab: Lab, interval: float) -> None:
    ms = str(round(interval * 1000))
    argv = ["vtysh", "-N", lab.ns("leaf1"), "-c", "configure terminal", "-c", "bfd"]
    argv += ["-c", "profile servers", "-c", f"transmit-interval {ms}"]
    argv += ["-c", f"receive-interval {ms}"]
    lab.run("leaf1", argv)


def _leaf_bfd(lab: Lab) -> dict[str, Any]:
    peers = lab.vtysh_json("leaf1", "show bfd peers json")
    return next((p for p in peers if p["peer"] == SERVER), {})


def _down_events(lab: Lab) -> int:
    peers = lab.vtysh_json("leaf1", "show bfd peers counters json")
    peer: dict[str, Any] = next((p for p in peers if p["peer"] == SERVER), {})
    return int(peer.get("session-down-events", 0))


def _routed(lab: Lab) -> bool:
    return SERVER in kernel_nexthops(lab, "leaf1", ANYCAST_V4)


def _time_until(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout}s")


def _drop(lab: Lab, on: bool) -> None:
    if on:
        script = (
            f"table inet {DROP_TABLE} {{\n"
            " chain in { type filter hook ingress device eth1 priority -500; policy drop; }\n"
            "}\n"
            f"table inet {DROP_TABLE}_out {{\n"
            " chain out { type filter hook output priority -500; policy accept;"
            ' oifname "eth1" drop; }\n'
            "}\n"
        )
        lab.run("srv1", ["nft", "-f", "-"], input=script)
    else:
        lab.run("srv1", ["nft", "delete", "table", "inet", DROP_TABLE], check=False)
        lab.run("srv1", ["nft", "delete", "table", "inet", f"{DROP_TABLE}_out"], check=False)


def _settle(lab: Lab, sidecar: Sidecar, interval: float | None) -> None:
    wait_until(lambda: _routed(lab), 60, f"srv1 never routed: {sidecar.log_tail(5)}", 0.1)
    if interval is not None:
        ms = round(interval * 1000)
        wait_until(
            lambda: (
                (p := _leaf_bfd(lab)).get("status") == "up"
                and p.get("remote-transmit-interval") == ms
                and p.get("transmit-interval") == ms
            ),
            30,
            f"BFD never up at {ms} ms",
            0.1,
        )


def _server_death(lab: Lab, sidecar: Sidecar, interval: float | None, trials: int) -> list[float]:
    times = []
    for _ in range(trials):
        _settle(lab, sidecar, interval)
        time.sleep(1.0)
        _drop(lab, True)
        try:
            times.append(_time_until(lambda: not _routed(lab), 30))
        finally:
            _drop(lab, False)
    return times


def _reconfigure(lab: Lab, sidecar: Sidecar, interval: float | None) -> None:
    if interval is not None:
        _leaf_profile(lab, interval)
    sidecar.write_config(_config(interval))
    sidecar.signal(signal.SIGHUP)
    _settle(lab, sidecar, interval)


def _load(lab: Lab, seconds: float) -> int:
    """Both cores saturated (busy loops in srv1, where the sidecar runs): down events."""
    before = _down_events(lab)
    burners = [lab.popen("srv1", [sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(seconds)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait(5)
    return _down_events(lab) - before


def _hung(lab: Lab, sidecar: Sidecar, trials: int) -> list[float]:
    times = []
    for _ in range(trials):
        _settle(lab, sidecar, 0.3)
        time.sleep(1.0)
        sidecar.signal(signal.SIGSTOP)
        try:
            times.append(_time_until(lambda: not _routed(lab), 30))
        finally:
            sidecar.signal(signal.SIGCONT)
    return times


def _summary(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"trials": 0}
    return {
        "trials": len(times),
        "min_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "all_s": [round(t, 3) for t in times],
    }


def run(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Deploy the lab, measure every section, return the figures."""
    results: dict[str, Any] = {"sizes": asdict(sizes), "machine": machine()}
    # On loopback, before the lab exists: nothing else competes for the CPU.
    results["jitter"] = bfd_jitter.run(sizes.jitter_seconds, sizes.jitter_lags)
    with deployed(TOPOLOGY, wait_bgp=BgpWait.NONE) as lab:
        service = Service(lab, "srv1")
        service.start()
        sidecar = Sidecar(lab, "srv1", _config(0.3), workdir)
        sidecar.start()
        try:
            _settle(lab, sidecar, 0.3)
            death: dict[str, Any] = {}
            for interval in sizes.intervals:
                _reconfigure(lab, sidecar, interval)
                death[f"{interval}x3"] = _summary(
                    _server_death(lab, sidecar, interval, sizes.trials)
                )
            loads: dict[str, int] = {}
            for interval in sorted({0.3, min(sizes.intervals)}):
                _reconfigure(lab, sidecar, interval)
                loads[f"{interval}x3"] = _load(lab, sizes.load_seconds)
            _reconfigure(lab, sidecar, 0.3)
            results["hung_sidecar"] = _summary(_hung(lab, sidecar, sizes.hung_trials))
            if sizes.hold_trials:
                _reconfigure(lab, sidecar, None)
                death["no BFD (hold 9 s)"] = _summary(
                    _server_death(lab, sidecar, None, sizes.hold_trials)
                )
            results["server_death"] = death
            results["false_downs_under_load"] = loads
        finally:
            sidecar.stop()
            service.kill()
    return results


def render(results: dict[str, Any]) -> str:
    """The figures as a Markdown section."""
    lines = [
        "# BFD benchmark",
        "",
        "Written by `python -m tests.benchmarks.bfd`; two-node lab (leaf1 FRR 8.4 bfdd, srv1",
        "with the sidecar). Times: from the fault to leaf1's kernel route losing srv1, polled",
        "every 10 ms through `ip -j route` (add ~10-20 ms of polling resolution).",
        "",
        "## Whole-server death (all packets on srv1's link dropped, link up)",
        "",
        "| setting | trials | min | median | max |",
        "|---|---|---|---|---|",
    ]
    for name, row in results.get("server_death", {}).items():
        if row.get("trials"):
            lines.append(
                f"| {name} | {row['trials']} | {row['min_s']} s | {row['median_s']} s |"
                f" {row['max_s']} s |"
            )
    lines += ["", "## Hung sidecar (SIGSTOP, 0.3 s x 3)", ""]
    hung = results.get("hung_sidecar", {})
    if hung.get("trials"):
        lines.append(
            f"{hung['trials']} trials: min {hung['min_s']} s, median {hung['median_s']} s, "
            f"max {hung['max_s']} s."
        )
    lines += [
        "",
        "## Transmit lateness against event-loop lag (loopback, 0.05 s x 3)",
        "",
        "CPU-bound callbacks hold the loop for `lag` at a time; the speaker's thread keeps",
        "its schedule and holds transmits back only when the loop's heartbeat is older",
        "than 200 ms.",
        "",
        "| loop lag | transmits | p50 late | p99 late | max late | held back | session |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results.get("jitter", []):
        lines.append(
            f"| {row['lag_s'] * 1000:.0f} ms | {row['transmits']} | {row['lateness_p50_ms']} ms"
            f" | {row['lateness_p99_ms']} ms | {row['lateness_max_ms']} ms"
            f" | {row['suppressed']} | {row['state_at_end']} |"
        )
    seconds = results.get("sizes", {}).get("load_seconds")
    lines += ["", f"## False downs with both cores saturated ({seconds} s each)", ""]
    for name, downs in results.get("false_downs_under_load", {}).items():
        lines.append(f"- {name}: {downs} session down events on leaf1")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = run(QUICK if args.quick else FULL, Path(tmp))
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "bfd.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.docs / "bfd.md").write_text(render(results), encoding="utf-8")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
