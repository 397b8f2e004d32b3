"""A service flapping every 0.5 s for most of a minute: route updates stay bounded.

Runs last in the suite (file name order); about 70 s.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import ANYCAST_V4, sidecar_config
from tests.lablib import wait_until
from tests.reliability.conftest import FaultRow, Running

pytestmark = pytest.mark.integration

FLAP_SECONDS = 55.0
HALF_PERIOD = 0.5
PORT = 8082

# Listen for HALF_PERIOD, close (connections are refused) for HALF_PERIOD, repeat; write
# the number of state toggles so the test knows how often the service really flapped.
FLAPPER = """
import json, os, socket, sys, time
path, port, half, total = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
toggles, end = 0, time.monotonic() + total
while time.monotonic() < end:
    server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("10.255.0.1", port)); server.listen(128); server.settimeout(0.05)
    until = time.monotonic() + half
    while time.monotonic() < until:
        try:
            server.accept()[0].close()
        except OSError:
            pass
    server.close()
    time.sleep(half)
    toggles += 2
    with open(path + ".tmp", "w") as out:
        json.dump({"toggles": toggles}, out)
    os.replace(path + ".tmp", path)
"""


def _updates_received(lab: Lab) -> int:
    data = lab.vtysh_json("leaf1", "show bgp neighbors 10.0.1.2 json")
    return int(data["10.0.1.2"]["messageStats"]["updatesRecv"])


def _config() -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["services"] = [
        {
            "name": "flappy",
            "check": {"type": "tcp", "host": "10.255.0.1", "port": PORT},
            "interval": 0.2,
            "timeout": 0.1,
            "rise": 2,
            "fall": 2,
        }
    ]
    # Dampening at its defaults (on; penalty 1000 per withdrawal, half-life 15 s,
    # suppress 3000, reuse 750), as a user who never heard of it would get.
    config["prefixes"] = [{"prefix": ANYCAST_V4, "services": ["flappy"], "bandwidth_mbps": 10_000}]
    return config


def test_flapping_service_sends_a_bounded_number_of_updates(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """The service accepts and refuses in turn every 0.5 s: health follows it (rise/fall
    2 at 0.2 s), but dampening suppresses the prefix after three withdrawals, so leaf1
    receives a handful of updates instead of one per flap."""
    row = fault(
        "service_flapping",
        f"service accepts/refuses every {HALF_PERIOD}s for "
        f"{FLAP_SECONDS:.0f}s (dampening at defaults)",
    )
    sidecar = running.sidecar("srv1", _config())
    wait_until(
        lambda: sidecar.events("bgp_session_changed"),
        timeout=20,
        message=f"no BGP session:\n{sidecar.log_tail()}",
    )
    updates_before = _updates_received(lab)
    counts: Path = running.workdir / "toggles.json"
    flapper = running.process(
        "srv1",
        [
            sys.executable,
            "-c",
            FLAPPER,
            str(counts),
            str(PORT),
            str(HALF_PERIOD),
            str(FLAP_SECONDS),
        ],
    )
    flapper.wait(timeout=FLAP_SECONDS + 15)
    toggles = int(json.loads(counts.read_text())["toggles"])
    # Let the last messages land; the prefix is dampened by now, so nothing else comes.
    time.sleep(1)  # settle window for in-flight UPDATEs, not a convergence wait
    updates = _updates_received(lab) - updates_before

    health_changes = [
        e for e in sidecar.events("service_state_changed") if e["service"] == "flappy"
    ]
    v4 = [e for e in sidecar.events() if e.get("prefix") == ANYCAST_V4]
    announced = sum(1 for e in v4 if e["event"] == "route_announced")
    withdrawn = sum(1 for e in v4 if e["event"] == "route_withdrawn")
    dampened = [e for e in v4 if e["event"] == "prefix_state_changed" and e["new"] == "dampened"]
    row.figures = {
        "service_toggles": toggles,
        "health_transitions": len(health_changes),
        "route_announced": announced,
        "route_withdrawn": withdrawn,
        "leaf_updates_received": updates,
        "dampened_after_s": round(_seconds_between(health_changes[0], dampened[0]), 2)
        if dampened and health_changes
        else None,
        "flap_seconds": FLAP_SECONDS,
    }
    print(row.figures)
    assert toggles >= 0.8 * FLAP_SECONDS / HALF_PERIOD, "the service did not really flap"
    assert len(health_changes) >= 10, "health never saw the flapping: the test shows nothing"
    assert dampened, "the prefix was never dampened"
    # Three withdrawals reach suppress (3 x 1000 >= 3000); while the service keeps
    # flapping the penalty never decays to reuse, so at most a few more announcements.
    assert announced + withdrawn <= 10, row.figures
    assert updates <= 12, row.figures
    row.survived = True


def _seconds_between(first: dict[str, Any], second: dict[str, Any]) -> float:
    from tests.reliability.conftest import event_time

    return event_time(second) - event_time(first)
