"""The dead-man switch end to end: real ExaBGP and our relay against the real FRR leaf.

The test plays the sidecar on the relay's unix socket: it announces the anycast route,
sends heartbeats for a while (the route stays), then falls silent while keeping the
socket open, as a SIGSTOPped sidecar or a blocked event loop would. The relay must then
stop ExaBGP, and leaf1 must drop the route from its FIB. Before, ExaBGP kept the session
and the route for as long as the hung sidecar stayed hung.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anycast_announcer.config import BgpConfig
from anycast_announcer.exabgp.bridge import HEARTBEAT, bridge_argv, heartbeat_interval
from anycast_announcer.exabgp.render import render_config, render_environment
from anycast_announcer.netlab import Lab
from tests.integration.sidecars import ANYCAST_V4, Running, kernel_nexthops
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

WATCHDOG = 3.0
SRV1 = "10.0.1.2"
EXABGP = Path(sys.executable).with_name("exabgp")


class FakeSidecar:
    """The sidecar's end of the relay socket: commands, heartbeats, and then silence."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.received = b""
        self._beating = threading.Event()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._heartbeats, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _heartbeats(self) -> None:
        while not self._stop.is_set():
            if self._beating.is_set():
                with contextlib.suppress(OSError):
                    self.connection.sendall(HEARTBEAT)
            time.sleep(heartbeat_interval(WATCHDOG))

    def _read(self) -> None:
        while not self._stop.is_set():
            if not self._beating.wait(timeout=0.1):
                continue  # hung: read nothing either
            try:
                self.connection.settimeout(0.2)
                data = self.connection.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.received += data

    def beat(self) -> None:
        self._beating.set()

    def hang(self) -> None:
        """Like SIGSTOP: no heartbeat, nothing read, but the socket stays open."""
        self._beating.clear()

    def send(self, line: str) -> None:
        self.connection.sendall(line.encode() + b"\n")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.connection.close()


@pytest.fixture
def exabgp_in_srv1(
    lab: Lab, running: Running
) -> Iterator[tuple[subprocess.Popen[bytes], FakeSidecar, Path]]:
    """ExaBGP in srv1's namespace, its relay connected to a socket this test holds."""
    if not EXABGP.exists():
        pytest.fail(f"exabgp is not installed beside {sys.executable}")
    with tempfile.TemporaryDirectory(prefix="aaw") as tmp:
        run_dir = Path(tmp)
        sock_path = run_dir / "api.sock"
        bgp = BgpConfig.model_validate(
            {
                "local_as": 65001,
                "router_id": SRV1,
                "hold_time": 3,
                "peers": [{"address": "10.0.1.1", "peer_as": 65100}],
            }
        )
        conf = run_dir / "exabgp.conf"
        conf.write_text(render_config(bgp, bridge_argv(str(sock_path), WATCHDOG)))
        env_file = run_dir / "exabgp.env"
        env_file.write_text("")
        user = pwd.getpwuid(os.getuid()).pw_name
        env = {**render_environment(user), "EXABGP_ENVFILE": str(env_file)}
        log_path = run_dir / "exabgp.log"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(sock_path))
            server.listen(1)
            server.settimeout(30)
            with log_path.open("wb") as log:
                process = lab.popen(
                    "srv1",
                    [str(EXABGP), "server", str(conf)],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                connection, _ = server.accept()
                sidecar = FakeSidecar(connection)
                try:
                    yield process, sidecar, log_path
                finally:
                    sidecar.close()
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(timeout=10)


def session_up(lab: Lab) -> bool:
    data = lab.vtysh_json("leaf1", f"show bgp neighbors {SRV1} json")
    return bool(data.get(SRV1, {}).get("bgpState") == "Established")


def test_a_silent_sidecar_loses_its_route_on_the_leaf(
    lab: Lab, exabgp_in_srv1: tuple[subprocess.Popen[bytes], FakeSidecar, Path]
) -> None:
    process, sidecar, log_path = exabgp_in_srv1
    sidecar.beat()
    wait_until(lambda: session_up(lab), timeout=30, message="the session never came up")
    sidecar.send(f"neighbor 10.0.1.1 announce route {ANYCAST_V4} next-hop self")
    wait_until(
        lambda: SRV1 in kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=20,
        message="leaf1 never installed the route",
    )

    # Heartbeats for three watchdog periods: nothing happens.
    time.sleep(3 * WATCHDOG)
    assert process.poll() is None, log_path.read_text(errors="replace")
    assert SRV1 in kernel_nexthops(lab, "leaf1", ANYCAST_V4)

    silent_at = time.monotonic()
    sidecar.hang()
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=WATCHDOG + 15,
        message=f"leaf1 kept the route of a hung sidecar:\n{log_path.read_text(errors='replace')}",
    )
    gone_after = time.monotonic() - silent_at
    wait_until(lambda: process.poll() is not None, timeout=15, message="ExaBGP kept running")
    print(
        f"route left leaf1's FIB {gone_after:.2f}s after the last heartbeat (watchdog {WATCHDOG}s)"
    )
    assert "no heartbeat from the sidecar" in log_path.read_text(errors="replace")
    assert not session_up(lab)
