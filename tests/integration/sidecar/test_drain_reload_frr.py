"""Drain and reload against a real FRR leaf.

Drain, in order: the hook runs while the route stays exactly as it was (the leaf keeps
the server in its FIB and an established session keeps flowing), the sidecar waits for
that session to end, re-announces with GRACEFUL_SHUTDOWN 65535:0 (FRR sets local-pref 0
and drops the path from its multipath set while it still exists), then withdraws.
Reload: a new bandwidth reaches the leaf without resetting the BGP session.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    ANYCAST_V6,
    Running,
    announced_via,
    bgp_paths,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
SRV2 = "10.0.2.2"


def _graceful_shutdown(path: dict[str, Any]) -> bool:
    """FRR 8.4 shows 65535:0 by name: "graceful-shutdown" (JSON list: "gracefulShutdown")."""
    return "gracefulShutdown" in path.get("community", {}).get("list", [])


class SessionClient:
    """tests.integration.session_client in the client node, driven line by line."""

    def __init__(self, lab: Lab, want: str) -> None:
        self.process = lab.popen(
            "client",
            [sys.executable, "-m", "tests.integration.session_client", "10.255.0.1", "8080", want],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).resolve().parents[3]),
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().strip()
        assert first == f"connected {want}", first

    def send(self, command: str) -> str:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return str(self.process.stdout.readline()).strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def drain_config(tmp_path: Path, **drain: Any) -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["drain"] = {
        "drain_file": str(tmp_path / "drain-now"),
        "state_file": str(tmp_path / "drain-state.json"),
        "hook": {"type": "command", "argv": ["sh", "-c", f"echo ran > {tmp_path / 'hook-ran'}"]},
        "connection_timeout": 60,
        "graceful_shutdown_hold": 2,
        **drain,
    }
    config["prefixes"] = [p for p in config["prefixes"] if p["prefix"] == ANYCAST_V4]
    return config


def test_drain_waits_for_sessions_then_graceful_shutdown_then_withdraws(
    lab: Lab, running: Running, tmp_path: Path
) -> None:
    """The whole drain sequence, each step checked on the leaf."""
    running.service("srv1")
    running.service("srv2")
    sidecar = running.sidecar("srv1")
    sidecar.write_config(drain_config(tmp_path))
    sidecar.stop()
    sidecar.start()
    running.sidecar("srv2", bandwidth_mbps=10_000)
    wait_until(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=20,
        message=f"both servers never announced:\n{sidecar.log_tail()}",
    )
    client = SessionClient(lab, "srv1")
    try:
        (tmp_path / "drain-now").touch()
        wait_until(
            lambda: (tmp_path / "hook-ran").exists(), timeout=10, message="the drain hook never ran"
        )
        wait_until(
            lambda: any(e.get("new") == "draining" for e in sidecar.events("prefix_state_changed")),
            timeout=10,
            message="the prefix never started draining",
        )
        # Step 2: a session is still open, so the route stays exactly as it was.
        for _ in range(5):
            assert announced_via(lab, SRV1, SRV2)
            assert client.send("ping") == "srv1"
        (path,) = [p for p in bgp_paths(lab, "leaf1", ANYCAST_V4) if p["nexthops"][0]["ip"] == SRV1]
        assert not _graceful_shutdown(path)
        # The application sheds its session (what the hook asks it to do).
        assert client.send("close") == "closed"

        # Step 3: GRACEFUL_SHUTDOWN; FRR gives the path local-pref 0 and stops using it.

        def graceful_path() -> dict[str, Any] | None:
            for p in bgp_paths(lab, "leaf1", ANYCAST_V4):
                if p["nexthops"][0]["ip"] == SRV1 and _graceful_shutdown(p):
                    return p
            return None

        path = wait_until(
            graceful_path, timeout=10, message=f"never saw 65535:0 from srv1:\n{sidecar.log_tail()}"
        )
        assert path.get("locPrf") == 0
        wait_until(
            lambda: announced_via(lab, SRV2),
            timeout=10,
            message="leaf1 kept srv1 in its FIB after graceful shutdown",
        )
        # Step 4: withdrawn after the hold.
        wait_until(
            lambda: all(
                p["nexthops"][0]["ip"] != SRV1 for p in bgp_paths(lab, "leaf1", ANYCAST_V4)
            ),
            timeout=10,
            message="srv1's path was never withdrawn",
        )
        phases = [e["new"] for e in sidecar.events("prefix_state_changed")]
        assert phases[-2:] == ["draining", "drained"]
        # Undrain by removing the file: back to normal.
        (tmp_path / "drain-now").unlink()
        wait_until(
            lambda: announced_via(lab, SRV1, SRV2),
            timeout=10,
            message="not re-announced after the drain file went away",
        )
    finally:
        client.stop()


def test_drain_hook_lets_sessions_end_gracefully_before_the_route_moves(
    lab: Lab, running: Running, tmp_path: Path
) -> None:
    """The hook tells the application to let its clients go (the lab service says BYE on
    SIGUSR1): the open session ends with the application's goodbye, not a reset, and
    the route changes only after the connection count reached zero."""
    service = running.service("srv1")
    running.service("srv2")
    assert service.process is not None
    hook = {"type": "command", "argv": ["kill", "-USR1", str(service.process.pid)]}
    srv1 = running.sidecar("srv1")
    srv1.write_config(drain_config(tmp_path, hook=hook))
    srv1.stop()
    srv1.start()
    running.sidecar("srv2", bandwidth_mbps=10_000)
    wait_until(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=20,
        message=f"both servers never announced:\n{srv1.log_tail()}",
    )
    client = SessionClient(lab, "srv1")
    try:
        assert client.send("ping") == "srv1"
        (tmp_path / "drain-now").touch()
        wait_until(
            lambda: any(e.get("new") == "drained" for e in srv1.events("prefix_state_changed")),
            timeout=20,
            message=f"the drain never completed:\n{srv1.log_tail()}",
        )
        assert client.send("ping") == "BYE"  # a goodbye, not "broken: [Errno 104] ..."
    finally:
        client.stop()
    order = [
        (e["event"], e.get("established"), e.get("graceful_shutdown"))
        for e in srv1.events()
        if e["event"] in {"drain_hook_finished", "drain_connections", "prefix_state_changed"}
    ]
    hook_done = order.index(("drain_hook_finished", None, None))
    zero = order.index(("drain_connections", 0, None))
    graceful = order.index(("prefix_state_changed", None, True))
    assert hook_done < graceful
    assert zero < graceful
    wait_until(
        lambda: announced_via(lab, SRV2),
        timeout=10,
        message="srv1 still in leaf1's FIB after the drain",
    )


def test_drain_survives_a_restart(lab: Lab, running: Running, tmp_path: Path) -> None:
    """A persisted drain keeps the server out after a sidecar restart, from the start."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    sidecar.write_config(drain_config(tmp_path, graceful_shutdown_hold=0, hook=None))
    sidecar.stop()
    (tmp_path / "drain-state.json").write_text(
        '{"drains": {"10.255.0.1/32": {"reason": "maintenance", "started_at": 1.0}}}',
        encoding="utf-8",
    )
    sidecar.start()
    wait_until(
        lambda: sidecar.events("bgp_session_changed"),
        timeout=20,
        message="the BGP session never came up",
    )
    wait_until(
        lambda: any(
            e.get("service") == "web" and e.get("new") == "up"
            for e in sidecar.events("service_state_changed")
        ),
        timeout=10,
        message="the service never came up",
    )
    assert not sidecar.events("route_announced")
    assert not kernel_nexthops(lab, "leaf1", ANYCAST_V4)
    reasons = [e["reason"] for e in sidecar.events("prefix_state_changed")]
    assert "drained: maintenance" in reasons


def test_reload_changes_bandwidth_without_resetting_the_session(lab: Lab, running: Running) -> None:
    """SIGHUP with a new bandwidth: the leaf's weights follow, the session stays up."""
    for node in ("srv1", "srv2"):
        running.service(node)
    srv1 = running.sidecar("srv1", bandwidth_mbps=10_000)
    running.sidecar("srv2", bandwidth_mbps=10_000)

    def weights() -> dict[str, int] | None:
        hops = kernel_nexthops(lab, "leaf1", ANYCAST_V4)
        return hops if len(hops) == 2 else None

    before = wait_until(weights, timeout=20, message="never both announced")
    assert before[SRV1] == before[SRV2]
    established = lab.vtysh_json("leaf1", f"show bgp neighbors {SRV1} json")[SRV1][
        "connectionsEstablished"
    ]
    srv1.write_config(sidecar_config("srv1", 1_000))
    srv1.signal(signal.SIGHUP)
    after = wait_until(
        lambda: (w := weights()) and w[SRV2] > 5 * w[SRV1] and w,
        timeout=10,
        message="leaf1's weights did not follow the new bandwidth",
    )
    print(f"weights before {before}, after reload {after}")
    (reloaded,) = srv1.events("config_reloaded")
    assert reloaded["notes"] == []
    assert (
        lab.vtysh_json("leaf1", f"show bgp neighbors {SRV1} json")[SRV1]["connectionsEstablished"]
        == established
    )


def test_invalid_reload_changes_nothing(lab: Lab, running: Running) -> None:
    """A broken file on SIGHUP is rejected and the announcement stays as it was."""
    running.service("srv1")
    srv1 = running.sidecar("srv1", bandwidth_mbps=10_000)
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    srv1.config_path.write_text("bgp: [unclosed", encoding="utf-8")
    srv1.signal(signal.SIGHUP)
    wait_until(
        lambda: srv1.events("reload_rejected"),
        timeout=10,
        message="the invalid reload was not reported",
    )
    assert srv1.process is not None
    assert srv1.process.poll() is None
    assert announced_via(lab, SRV1)
    (path,) = bgp_paths(lab, "leaf1", ANYCAST_V4)
    assert path["extendedCommunity"]["string"] == "LB:65001:1250000000 (10.000 Gbps)"


def test_reload_adding_a_peer_restarts_exabgp_and_leaves_nothing_stale(
    lab: Lab, running: Running
) -> None:
    """A new peer in bgp.peers restarts ExaBGP (its own reload left unchanged peers
    refusing our announcements in ExaBGP 5.0.15, so routes sent before it could no longer
    be withdrawn). The IPv6 session comes up with the IPv6 prefix, and every route,
    old session or new, is withdrawn when the service dies."""
    running.service("srv1")
    config = sidecar_config("srv1", 10_000)
    ipv4_only = {
        **config,
        "bgp": {**config["bgp"], "peers": config["bgp"]["peers"][:1]},
        "prefixes": config["prefixes"][:1],
    }
    srv1 = running.sidecar("srv1")
    srv1.write_config(ipv4_only)
    srv1.stop()
    srv1.start()
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    assert not kernel_nexthops(lab, "leaf1", ANYCAST_V6)
    srv1.write_config(config)
    srv1.signal(signal.SIGHUP)
    wait_until(
        lambda: kernel_nexthops(lab, "leaf1", ANYCAST_V6),
        timeout=20,
        message=f"the IPv6 prefix never arrived after the reload:\n{srv1.log_tail()}",
    )
    (reloaded,) = srv1.events("config_reloaded")
    assert reloaded["notes"] == ["bgp changed: ExaBGP restarted"]
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=20,
        message="the IPv4 prefix did not come back after the restart",
    )
    running.services[0].kill()
    wait_until(
        lambda: (
            not kernel_nexthops(lab, "leaf1", ANYCAST_V4)
            and not kernel_nexthops(lab, "leaf1", ANYCAST_V6)
        ),
        timeout=10,
        message="a route survived its service after the reload",
    )
