"""A real sidecar speaking BFD to FRR 8.4: the leaf drops a hung sidecar in about a
second, /status shows the session, and a clean stop withdraws before AdminDown."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from anycast_announcer.netlab.plan import BgpWait
from tests.integration.sidecars import (
    ANYCAST_V4,
    Running,
    Sidecar,
    kernel_nexthops,
    measure,
    sidecar_config,
)
from tests.lablib import RecordProperty, deployed, require_lab_host, wait_until

pytestmark = pytest.mark.integration

TOPOLOGY = Path(__file__).parent / "sidecar.clab.yml"
STATUS_PORT = 9180


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_host()
    with deployed(TOPOLOGY, wait_bgp=BgpWait.NONE) as deployed_lab:
        yield deployed_lab


@pytest.fixture
def running(lab: Lab, tmp_path: Path) -> Iterator[Running]:
    state = Running(lab, tmp_path)
    try:
        yield state
    finally:
        state.close()


def bfd_config(sidecar_config: dict[str, Any]) -> dict[str, Any]:
    bgp = sidecar_config["bgp"]
    bgp["hold_time"] = 9
    for peer in bgp["peers"]:
        peer["bfd"] = True
    sidecar_config["http"] = {"listen": f"127.0.0.1:{STATUS_PORT}"}
    return sidecar_config


def leaf_bfd(lab: Lab, server: str) -> dict[str, Any]:
    peers = lab.vtysh_json("leaf1", "show bfd peers json")
    return next(p for p in peers if p["peer"] == server)


def leaf_bgp(lab: Lab, server: str) -> dict[str, Any]:
    neighbor: dict[str, Any] = lab.vtysh_json("leaf1", f"show bgp neighbor {server} json")[server]
    return neighbor


def status(lab: Lab) -> dict[str, Any]:
    fetch = (
        "import urllib.request,sys;"
        f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{STATUS_PORT}/status')"
        ".read().decode())"
    )
    result: dict[str, Any] = json.loads(
        lab.run("srv1", ["python3", "-c", fetch], check=True).stdout
    )
    return result


def test_a_hung_sidecar_leaves_the_fib_within_about_a_second(
    lab: Lab, running: Running, record_property: RecordProperty
) -> None:
    """SIGSTOP: BFD goes silent with the process; the 9 s hold timer plays no part."""
    running.service("srv1")
    sidecar = Sidecar(lab, "srv1", bfd_config(sidecar_config("srv1", 10_000)), running.workdir)
    sidecar.start()
    running.sidecars.append(sidecar)
    wait_until(
        lambda: "10.0.1.2" in kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=30,
        message=f"leaf1 never routed the anycast prefix to srv1: {sidecar.log_tail()}",
    )
    for server in ("10.0.1.2", "fd00:1::2"):
        wait_until(
            lambda s=server: leaf_bfd(lab, s)["status"] == "up",  # type: ignore[misc]
            timeout=15,
            message=f"BFD {server} never came up on leaf1",
        )
    peers = {p["address"]: p for p in status(lab)["peers"]}
    bfd = peers["10.0.1.1"]["bfd"]
    assert bfd["state"] == "up"
    assert bfd["remote_discriminator"] == leaf_bfd(lab, "10.0.1.2")["id"]
    assert bfd["transmit_interval"] == pytest.approx(0.3)
    assert bfd["detection_time"] == pytest.approx(0.9)

    sidecar.signal(signal.SIGSTOP)
    try:
        gone = measure(
            lambda: "10.0.1.2" not in kernel_nexthops(lab, "leaf1", ANYCAST_V4),
            timeout=5,
            message="leaf1 kept routing to a hung sidecar",
        )
    finally:
        sidecar.signal(signal.SIGCONT)
    record_property("hung_sidecar_fib_removal_s", round(gone, 3))
    print(f"hung sidecar: leaf1's FIB dropped srv1 after {gone:.3f} s")
    assert gone < 1.5  # the hold timer would take 9 s
    wait_until(
        lambda: "10.0.1.2" in kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=30,
        message="srv1 never came back after SIGCONT",
    )

    sidecar.stop()
    events = [e["event"] for e in sidecar.events()]
    assert "withdrawn_all" in events
    assert "bfd_stopped" in events
    assert events.index("withdrawn_all") < events.index("bfd_stopped")
    frr = wait_until(
        lambda: (p := leaf_bfd(lab, "10.0.1.2"))["status"] == "down" and p,
        timeout=5,
        message="leaf1's BFD session stayed up after the clean stop",
    )
    assert frr["remote-diagnostic"] == "administratively down"


def test_a_bfd_change_at_reload_polls_and_keeps_exabgp(lab: Lab, running: Running) -> None:
    """SIGHUP with new BFD timers: FRR sees them through a Poll Sequence, the session
    never leaves Up, and ExaBGP is not restarted (BGP stays established)."""
    running.service("srv1")
    config = bfd_config(sidecar_config("srv1", 10_000))
    sidecar = Sidecar(lab, "srv1", config, running.workdir)
    sidecar.start()
    running.sidecars.append(sidecar)
    wait_until(
        lambda: (
            leaf_bfd(lab, "10.0.1.2")["status"] == "up"
            and leaf_bfd(lab, "10.0.1.2")["remote-transmit-interval"] == 300
        ),
        timeout=30,
        message=f"BFD never up at 300 ms: {sidecar.log_tail()}",
    )
    # BGP must be up before the reload for "stays up" to mean anything: BFD comes up
    # first, and FRR 10.3 opens BGP a little later than 8.4 after the previous test's
    # clean stop (its AdminDown reset the session).
    wait_until(
        lambda: (
            leaf_bgp(lab, "10.0.1.2")["bgpState"] == "Established"
            and {p["address"]: p for p in status(lab)["peers"]}["10.0.1.1"]["state"] == "up"
        ),
        timeout=30,
        message=f"BGP never up: leaf1 says {leaf_bgp(lab, '10.0.1.2').get('bgpState')}",
    )
    dropped = leaf_bgp(lab, "10.0.1.2").get("connectionsDropped", 0)
    before = leaf_bfd(lab, "10.0.1.2")
    started = len(sidecar.events("exabgp_started"))
    for peer in config["bgp"]["peers"]:
        peer["bfd"] = {"min_tx": 0.5, "min_rx": 0.6, "multiplier": 4}
    sidecar.write_config(config)
    sidecar.signal(signal.SIGHUP)
    after = wait_until(
        lambda: (p := leaf_bfd(lab, "10.0.1.2"))["remote-transmit-interval"] == 500 and p,
        timeout=10,
        message="FRR never saw the reloaded BFD timers",
    )
    assert after["remote-receive-interval"] == 600
    assert after["remote-detect-multiplier"] == 4
    assert after["status"] == "up"
    assert after["uptime"] >= before["uptime"]  # the session never went down
    assert len(sidecar.events("exabgp_started")) == started
    changed = [e for e in sidecar.events("bfd_session_changed") if e.get("peer") == "10.0.1.1"]
    assert [e["new"] for e in changed] == ["init", "up"] or [e["new"] for e in changed] == ["up"]
    peers = {p["address"]: p for p in status(lab)["peers"]}
    assert peers["10.0.1.1"]["bfd"]["transmit_interval"] == pytest.approx(0.5)
    assert peers["10.0.1.1"]["state"] == "up"
    assert leaf_bgp(lab, "10.0.1.2")["bgpState"] == "Established"
    assert leaf_bgp(lab, "10.0.1.2").get("connectionsDropped", 0) == dropped
