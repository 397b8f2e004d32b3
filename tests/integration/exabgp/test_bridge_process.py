"""The relay as a real process between a unix socket (the sidecar) and its parent (ExaBGP).

The parent is ``fake_exabgp``, which records what reaches "ExaBGP" and whether it was told
to stop (SIGTERM), so each property of the dead-man switch is observed from outside.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from anycast_announcer.exabgp.bridge import HEARTBEAT, WATCHDOG_EXIT, bridge_argv
from tests.lablib import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Rig:
    """A fake ExaBGP running our relay, and the sidecar end of the relay's socket."""

    outdir: Path
    parent: subprocess.Popen[bytes]
    sidecar: socket.socket

    def commands(self) -> bytes:
        path = self.outdir / "commands"
        return path.read_bytes() if path.exists() else b""

    def bridge_exit(self) -> int | None:
        path = self.outdir / "bridge_exit"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    def terminated(self) -> bool:
        return (self.outdir / "terminated").exists()

    def exabgp_says(self, data: bytes) -> None:
        assert self.parent.stdin is not None
        self.parent.stdin.write(data)
        self.parent.stdin.flush()


@pytest.fixture
def start_rig() -> Iterator[Callable[[float], Rig]]:
    rigs: list[Rig] = []
    with tempfile.TemporaryDirectory(prefix="aab") as tmp:

        def start(watchdog: float) -> Rig:
            outdir = Path(tmp) / str(len(rigs))
            outdir.mkdir()
            sock_path = str(outdir / "s")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
                server.bind(sock_path)
                server.listen(1)
                server.settimeout(30)
                parent = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.integration.exabgp.fake_exabgp",
                        str(outdir),
                        *bridge_argv(sock_path, watchdog),
                    ],
                    cwd=REPO_ROOT,
                    stdin=subprocess.PIPE,
                )
                sidecar, _ = server.accept()
            rig = Rig(outdir, parent, sidecar)
            rigs.append(rig)
            return rig

        try:
            yield start
        finally:
            for rig in rigs:
                rig.sidecar.close()
                if rig.parent.poll() is None:
                    rig.parent.kill()
                rig.parent.wait(timeout=10)
                if rig.parent.stdin is not None:
                    with contextlib.suppress(OSError):  # unsent bytes of the flood test
                        rig.parent.stdin.close()


def test_commands_pass_and_heartbeats_do_not(start_rig: Callable[[float], Rig]) -> None:
    rig = start_rig(30)
    rig.sidecar.sendall(b"announce one\n" + HEARTBEAT + b"announce two\n" + HEARTBEAT)
    wait_until(
        lambda: rig.commands() == b"announce one\nannounce two\n",
        timeout=10,
        message="ExaBGP did not get exactly the two commands",
    )
    rig.exabgp_says(b'{"type": "state"}\n')
    rig.sidecar.settimeout(10)
    assert rig.sidecar.recv(100) == b'{"type": "state"}\n'


def test_silence_stops_exabgp(start_rig: Callable[[float], Rig]) -> None:
    """No line for the watchdog time: the relay exits and SIGTERMs its parent."""
    rig = start_rig(0.5)
    wait_until(rig.terminated, timeout=10, message="ExaBGP was never told to stop")
    wait_until(
        lambda: rig.bridge_exit() == WATCHDOG_EXIT or rig.parent.poll() is not None,
        timeout=10,
        message="the relay did not exit",
    )


def test_heartbeats_keep_it_running(start_rig: Callable[[float], Rig]) -> None:
    """Heartbeats far more often than the watchdog: nothing stops for several watchdogs."""
    rig = start_rig(3)
    until = time.monotonic() + 7
    while time.monotonic() < until:
        rig.sidecar.sendall(HEARTBEAT)
        time.sleep(0.1)
    assert not rig.terminated()
    assert rig.parent.poll() is None
    assert rig.commands() == b""


def test_no_watchdog_means_no_deadline(start_rig: Callable[[float], Rig]) -> None:
    """Without --watchdog (the old behaviour) silence is fine."""
    rig = start_rig(0)
    time.sleep(2)  # several times longer than the shortest watchdog used above
    assert not rig.terminated()
    rig.sidecar.sendall(b"still here\n")
    wait_until(lambda: rig.commands() == b"still here\n", timeout=10, message="not relayed")


def test_a_sidecar_that_stopped_reading_cannot_wedge_the_relay(
    start_rig: Callable[[float], Rig],
) -> None:
    """ExaBGP floods the socket of a sidecar that reads nothing (SIGSTOPped): the relay
    stops reading ExaBGP instead of blocking in a write, and the watchdog still fires."""
    rig = start_rig(1)
    rig.sidecar.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood = (b'{"type": "update", "padding": "' + b"x" * 4000 + b'"}\n') * 2000
    assert rig.parent.stdin is not None
    os.set_blocking(rig.parent.stdin.fileno(), False)
    # The pipe toward the fake ExaBGP fills up too: that is the point.
    with contextlib.suppress(BlockingIOError):
        rig.parent.stdin.write(flood)
    wait_until(rig.terminated, timeout=15, message="the watchdog did not fire under backpressure")


def test_a_long_line_passes_whole_and_the_relay_goes_on(
    start_rig: Callable[[float], Rig],
) -> None:
    """A line of a megabyte is relayed unchanged; heartbeats after it still vanish."""
    rig = start_rig(30)
    line = b"announce " + b"z" * 1_000_000 + b"\n"
    rig.sidecar.sendall(line + HEARTBEAT + b"after\n")
    wait_until(
        lambda: rig.commands() == line + b"after\n",
        timeout=20,
        message="the long line or the one after it did not arrive intact",
    )


def test_sidecar_gone_stops_exabgp(start_rig: Callable[[float], Rig]) -> None:
    """The sidecar closed its end: nobody vouches for the routes any more."""
    rig = start_rig(0)
    rig.sidecar.close()
    wait_until(rig.terminated, timeout=10, message="ExaBGP was not stopped")
