"""Event-driven detection against a real FRR leaf: each source withdraws, and each
harmless event does not.

The probes in these tests are slow on purpose (every 5 s, fall 3: 10 s or more to notice
a dead service), so a route that leaves leaf1 within a few seconds left because of an
event, and the sidecar's log names the source. The no-false-alarm tests end by killing
the last listener: the withdrawal that follows proves the event path was alive all along,
so the quiet before it means something.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.events.systemd_user import UserManager, user_manager
from tests.integration.sidecars import (
    ANYCAST_V4,
    SERVICE_PORT,
    Running,
    Sidecar,
    announced_via,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
ADDRESS = "10.255.0.1"
SLOW_PROBES = {"interval": 5.0, "timeout": 1.0, "rise": 1, "fall": 3}
EVENT_BOUND = 4.0
"""Seconds within which an event-driven withdrawal must show at the leaf (probes: >= 10)."""


class Listener:
    """``tests.integration.events.tcpproc serve`` in srv1: one listening socket."""

    def __init__(self, lab: Lab, address: str, *options: str) -> None:
        argv = [sys.executable, "-m", "tests.integration.events.tcpproc", "serve", address]
        self.process: subprocess.Popen[str] = lab.popen(
            "srv1",
            [*argv, str(SERVICE_PORT), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "listening":
            _, error = self.process.communicate(timeout=10)
            sockets = lab.run("srv1", ["ss", "-tanp"]).stdout
            raise AssertionError(f"tcpproc did not listen on {address}: {error[-300:]}\n{sockets}")

    def stop(self, signum: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=10)


@pytest.fixture
def listeners(lab: Lab) -> Iterator[list[Listener]]:
    """Listeners a test starts; all stopped afterwards."""
    started: list[Listener] = []
    try:
        yield started
    finally:
        for listener in started:
            listener.stop()


def listen(lab: Lab, started: list[Listener], address: str = ADDRESS, *options: str) -> Listener:
    listener = Listener(lab, address, *options)
    started.append(listener)
    return listener


def start_sidecar(
    running: Running, detection: dict[str, Any] | None = None, **service: Any
) -> Sidecar:
    config = sidecar_config("srv1", 10_000)
    config["services"][0].update({**SLOW_PROBES, **service})
    config["prefixes"] = config["prefixes"][:1]  # IPv4 only: the events are per address
    if detection is not None:
        config["detection"] = detection
    sidecar = Sidecar(running.lab, "srv1", config, running.workdir)
    sidecar.start()
    running.sidecars.append(sidecar)
    wait_until(
        lambda: announced_via(running.lab, SRV1),
        timeout=30,
        message=f"never announced:\n{sidecar.log_tail()}",
    )
    return sidecar


def withdrawn_by(lab: Lab, sidecar: Sidecar, source: str) -> dict[str, Any]:
    """Wait for the withdrawal; the service_state_changed event that caused it."""
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=EVENT_BOUND,
        message=f"leaf1 kept the route: no {source} event acted\n{sidecar.log_tail()}",
    )
    (down,) = [e for e in sidecar.events("service_state_changed") if e["new"] == "down"]
    assert down["source"] == source, down
    return down


def stays_announced(lab: Lab, sidecar: Sidecar, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert announced_via(lab, SRV1), f"withdrawn by a harmless event:\n{sidecar.log_tail()}"
        time.sleep(0.1)
    assert not [e for e in sidecar.events("service_state_changed") if e["new"] == "down"]


def test_sigkill_of_the_service_withdraws_on_the_listener_event(
    lab: Lab, running: Running, listeners: list[Listener]
) -> None:
    listener = listen(lab, listeners)
    sidecar = start_sidecar(running)
    listener.stop(signal.SIGKILL)
    down = withdrawn_by(lab, sidecar, "listener")
    assert down["reason"] == f"listener closed: {ADDRESS}:{SERVICE_PORT}"
    prefix = sidecar.events("prefix_state_changed")[-1]
    assert prefix["reason"] == f"service web down (listener closed: {ADDRESS}:{SERVICE_PORT})"


def test_graceful_stop_withdraws_on_the_listener_event(
    lab: Lab, running: Running, listeners: list[Listener]
) -> None:
    listener = listen(lab, listeners)
    sidecar = start_sidecar(running)
    listener.stop(signal.SIGTERM)
    withdrawn_by(lab, sidecar, "listener")


def test_client_connections_closing_do_not_withdraw(
    lab: Lab, running: Running, listeners: list[Listener]
) -> None:
    """Hundreds of client connections end on the port (FIN and RST): nothing happens."""
    listener = listen(lab, listeners)
    sidecar = start_sidecar(running)
    for abort in ([], ["--abort"]):
        churn = [sys.executable, "-m", "tests.integration.events.tcpproc", "churn", ADDRESS]
        result = lab.run("leaf1", [*churn, str(SERVICE_PORT), "300", *abort], timeout=60)
        assert result.stdout.strip() == "done 300", result.stderr
    stays_announced(lab, sidecar, 1.0)
    listener.stop()
    withdrawn_by(lab, sidecar, "listener")


def test_reuseport_handover_does_not_withdraw(
    lab: Lab, running: Running, listeners: list[Listener]
) -> None:
    """The new process listens before the old one closes (SO_REUSEPORT): no gap."""
    old = listen(lab, listeners, ADDRESS, "--reuseport")
    sidecar = start_sidecar(running)
    new = listen(lab, listeners, ADDRESS, "--reuseport")
    old.stop(signal.SIGKILL)
    stays_announced(lab, sidecar, 2.0)
    new.stop(signal.SIGKILL)
    withdrawn_by(lab, sidecar, "listener")


def test_a_second_listener_on_the_wildcard_keeps_the_route(
    lab: Lab, running: Running, listeners: list[Listener]
) -> None:
    # Both set SO_REUSEPORT: Linux refuses a wildcard bind beside a listening specific
    # one otherwise.
    specific = listen(lab, listeners, ADDRESS, "--reuseport")
    sidecar = start_sidecar(running)
    wildcard = listen(lab, listeners, "0.0.0.0", "--reuseport")
    specific.stop()
    stays_announced(lab, sidecar, 2.0)
    wildcard.stop()
    withdrawn_by(lab, sidecar, "listener")


def test_process_exit_withdraws_through_the_pid_file(
    lab: Lab, running: Running, listeners: list[Listener], tmp_path: Path
) -> None:
    listener = listen(lab, listeners)
    pid_file = tmp_path / "web.pid"
    pid_file.write_text(f"{listener.process.pid}\n")
    sidecar = start_sidecar(running, listener_events=False, pid_file=str(pid_file))
    listener.stop(signal.SIGKILL)
    down = withdrawn_by(lab, sidecar, "process")
    assert down["reason"] == f"process exited: pid {listener.process.pid}"


def test_address_removed_from_lo_withdraws_on_the_rtnetlink_event(
    lab: Lab, running: Running, listeners: list[Listener]
) -> None:
    listen(lab, listeners, "0.0.0.0")  # survives the address going
    sidecar = start_sidecar(running)
    lab.run("srv1", ["ip", "addr", "del", f"{ADDRESS}/32", "dev", "lo"], check=True)
    try:
        wait_until(
            lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
            timeout=EVENT_BOUND,
            message=f"leaf1 kept the route without the address\n{sidecar.log_tail()}",
        )
        changes = [e for e in sidecar.events("address_changed") if not e["present"]]
        assert [e["reason"] for e in changes] == ["address removed"], changes
        assert (
            sidecar.events("prefix_state_changed")[-1]["reason"] == "address 10.255.0.1 not on lo"
        )
    finally:
        lab.run("srv1", ["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=False)
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=EVENT_BOUND,
        message=f"not announced again when the address came back\n{sidecar.log_tail()}",
    )


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[UserManager]:
    """A real systemd user manager with its own D-Bus bus."""
    with user_manager(tmp_path / "systemd") as started:
        yield started


def test_a_failed_systemd_unit_withdraws(
    lab: Lab, running: Running, manager: UserManager, listeners: list[Listener]
) -> None:
    """The unit's service runs in srv1's namespace; its unit fails; the route goes."""
    holder = listen(lab, listeners, "127.0.0.1")  # any process in srv1: its netns to enter
    serve = f"{sys.executable} -m tests.integration.events.tcpproc serve {ADDRESS} {SERVICE_PORT}"
    manager.add_unit(
        "anycast-web.service",
        "[Service]\n"
        f"ExecStart=nsenter --net=/proc/{holder.process.pid}/ns/net {serve}\n"
        f"WorkingDirectory={Path.cwd()}\n"
        "Restart=no\n",
    )
    manager.systemctl("start", "anycast-web.service")
    sidecar = start_sidecar(
        running,
        detection={"systemd_bus": str(manager.bus)},
        listener_events=False,
        systemd_unit="anycast-web.service",
    )
    pid = manager.main_pid("anycast-web.service")
    subprocess.run(["kill", "-9", str(pid)], check=True)
    down = withdrawn_by(lab, sidecar, "unit")
    assert down["reason"] == "unit failed"
