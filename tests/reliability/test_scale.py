"""Scale: one sidecar with 1,000 services and 200 prefixes against a real leaf."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import sidecar_config
from tests.lablib import wait_until
from tests.reliability.conftest import (
    FaultRow,
    Running,
    cmdline,
    event_time,
    ns_pids,
    rss_kib,
)

pytestmark = pytest.mark.integration

SERVICES = 1000
PREFIXES = 200
PORTS = 10
INTERVAL = 5.0

# Accept and close at once; count accepted connections, rewrite the count file often.
LISTENER = """
import asyncio, json, sys, time
count = 0
async def main(path, ports):
    def handle(reader, writer):
        global count
        count += 1
        writer.close()
    for port in ports:
        await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    while True:
        with open(path + ".tmp", "w") as out:
            json.dump({"count": count, "at": time.time()}, out)
        import os; os.replace(path + ".tmp", path)
        await asyncio.sleep(0.2)
asyncio.run(main(sys.argv[1], [int(p) for p in sys.argv[2:]]))
"""


def _config() -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["services"] = [
        {
            "name": f"s{index:04d}",
            "check": {"type": "tcp", "host": "127.0.0.1", "port": 21000 + index % PORTS},
            "interval": INTERVAL,
            "timeout": 1.0,
            "rise": 1,
            "fall": 2,
        }
        for index in range(SERVICES)
    ]
    per_prefix = SERVICES // PREFIXES
    config["prefixes"] = [
        # Inside the anycast /24 that leaf1's import policy admits.
        {
            "prefix": f"10.255.0.{10 + index}/32",
            "bandwidth_mbps": 1000,
            "manage_address": True,
            "services": [f"s{index * per_prefix + k:04d}" for k in range(per_prefix)],
        }
        for index in range(PREFIXES)
    ]
    return config


def _leaf_prefixes(lab: Lab) -> int:
    data = lab.vtysh_json("leaf1", "show bgp ipv4 unicast json")
    return sum(
        1
        for prefix in data.get("routes", {})
        if prefix.startswith("10.255.0.") and prefix != "10.255.0.1/32"
    )


def _count(path: Path) -> tuple[int, float]:
    data = json.loads(path.read_text())
    return int(data["count"]), float(data["at"])


def test_thousand_services_two_hundred_prefixes(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """1,000 tcp services and 200 prefixes in one config: it starts, probes on schedule
    (measured by the listener), announces all 200 prefixes to leaf1, and its memory is
    recorded."""
    row = fault(
        "scale_1000_services_200_prefixes",
        "one config with 1,000 tcp services and 200 /32 prefixes",
    )
    counts = running.workdir / "accepted.json"
    running.process(
        "srv1",
        [sys.executable, "-c", LISTENER, str(counts), *(str(21000 + p) for p in range(PORTS))],
    )
    wait_until(counts.exists, timeout=10, message="listener did not start")
    started = time.monotonic()
    sidecar = running.sidecar("srv1", _config())

    def services_up() -> int:
        last = {e["service"]: e["new"] for e in sidecar.events("service_state_changed")}
        return sum(1 for state in last.values() if state == "up")

    wait_until(
        lambda: services_up() == SERVICES,
        timeout=60,
        message=f"not every service came up:\n{sidecar.log_tail()}",
    )
    all_up_s = time.monotonic() - started
    ups = [event_time(e) for e in sidecar.events("service_state_changed") if e["new"] == "up"]
    (sidecar_started,) = sidecar.events("sidecar_started")
    down_at_start = sorted(
        {e["service"] for e in sidecar.events("service_state_changed") if e["new"] == "down"}
    )
    down_reasons = sorted(
        {e["reason"] for e in sidecar.events("service_state_changed") if e["new"] == "down"}
    )
    wait_until(
        lambda: _leaf_prefixes(lab) == PREFIXES,
        timeout=60,
        message=f"leaf1 did not get all {PREFIXES} prefixes",
    )
    all_on_leaf_s = time.monotonic() - started

    # Probe rate over a window of two intervals, from the listener's side.
    first, first_at = _count(counts)
    window = 2 * INTERVAL
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        time.sleep(0.5)
    last, last_at = _count(counts)
    rate = (last - first) / (last_at - first_at)
    expected = SERVICES / INTERVAL
    assert rate > 0.8 * expected, f"{rate:.0f} probes/s, expected about {expected:.0f}"

    pids = [
        pid
        for pid in ns_pids(lab, "srv1")
        if "anycast_announcer run" in cmdline(pid)
        or "exabgp" in cmdline(pid)
        or "anycast_announcer.exabgp.bridge" in cmdline(pid)
    ]
    sidecar_pid = sidecar.process.pid if sidecar.process else 0
    row.lost_routes = PREFIXES - _leaf_prefixes(lab)
    row.figures = {
        "services_all_up_s": round(all_up_s, 2),
        "first_up_after_sidecar_started_s": round(min(ups) - event_time(sidecar_started), 2),
        "last_up_after_sidecar_started_s": round(max(ups) - event_time(sidecar_started), 2),
        "services_down_before_first_up": len(down_at_start),
        "down_reasons_at_start": down_reasons[:3],
        "prefixes_all_on_leaf_s": round(all_on_leaf_s, 2),
        "probes_per_s": round(rate, 1),
        "probes_per_s_expected": expected,
        "sidecar_rss_mib": round(rss_kib(sidecar_pid) / 1024, 1),
        "sidecar_plus_exabgp_rss_mib": round(sum(rss_kib(pid) for pid in pids) / 1024, 1),
        "processes_measured": len(pids),
    }
    started_stop = time.monotonic()
    sidecar.stop()
    wait_until(
        lambda: _leaf_prefixes(lab) == 0,
        timeout=30,
        message="prefixes stayed on leaf1 after SIGTERM",
    )
    row.figures["all_withdrawn_after_sigterm_s"] = round(time.monotonic() - started_stop, 2)
    row.survived = True
    print(row.figures)
