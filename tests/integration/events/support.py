"""What the event-source tests share: TCP processes in the lab, and polling on the loop."""

from __future__ import annotations

import asyncio
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from anycast_announcer.netlab import Lab
from tests.lablib import REPO_ROOT

__all__ = ["TcpProcesses", "eventually"]

_STARTUP = 15.0


class TcpProcesses:
    """Services in srv and loads in client, as real processes (tests/integration/events/tcpproc)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.started: list[subprocess.Popen[str]] = []

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tests.integration.events.tcpproc", *args]

    def serve(self, address: str, port: int, *flags: str) -> subprocess.Popen[str]:
        """Start a listener in srv and return once it listens."""
        proc = self.lab.popen(
            "srv",
            self._argv("serve", address, str(port), *flags),
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        self.started.append(proc)
        self.expect(proc, "listening")
        return proc

    def expect(self, proc: subprocess.Popen[str], line: str) -> None:
        """Wait for ``line`` on the process's stdout; fail with what happened otherwise."""
        assert proc.stdout is not None
        deadline = time.monotonic() + _STARTUP
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                got = proc.stdout.readline().strip()
                if got == line:
                    return
                if not got and proc.poll() is not None:
                    break
        raise AssertionError(f"{proc.args!r} never printed {line!r} (exit code {proc.poll()})")

    def kill(self, proc: subprocess.Popen[str]) -> None:
        """SIGKILL: the kernel closes its sockets as the process dies."""
        proc.kill()
        proc.wait(timeout=10)

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """SIGTERM: the service closes its listener itself, then exits."""
        proc.send_signal(signal.SIGTERM)
        self.expect(proc, "closed")
        proc.wait(timeout=10)

    def churn(self, address: str, port: int, count: int, *flags: str) -> None:
        """``count`` connections from client, opened and closed one after the other."""
        result = self.lab.run(
            "client", self._argv("churn", address, str(port), str(count), *flags), timeout=120
        )
        assert result.stdout.strip() == f"done {count}", result.stdout + result.stderr

    def close(self) -> None:
        """Kill whatever is still running."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


async def eventually(predicate: Callable[[], Any], message: str, timeout: float = 10.0) -> None:
    """Poll ``predicate`` on the loop (so watchers keep running) until true or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} (waited {timeout:g}s)")
        await asyncio.sleep(0.01)
