"""The test side of ``speaker_child``: start it in a lab node, send commands, read events."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from anycast_announcer.netlab import Lab
from tests.lablib import REPO_ROOT


class SpeakerChild:
    """One speaker process in ``node``; events are collected by a reader thread."""

    def __init__(self, lab: Lab, node: str, heartbeat_timeout: float = 0.2) -> None:
        self.proc = lab.popen(
            node,
            [sys.executable, "-m", "tests.integration.bfd.speaker_child", str(heartbeat_timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(lambda e: e["event"] == "ready", 10.0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if match(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"speaker: no matching event within {timeout}s; got {self.events[-5:]}"
                    )
                self._cond.wait(left)

    def snapshot(self) -> dict[str, Any]:
        since = len(self.events)
        self.send(op="snapshot")
        return self.wait_for(lambda e: e["event"] == "snapshot", 5.0, since)

    def add(self, peer: str, local: str, min_tx: float, min_rx: float, mult: int) -> None:
        since = len(self.events)
        self.send(op="add", peer=peer, local=local, min_tx=min_tx, min_rx=min_rx, mult=mult)
        self.wait_for(lambda e: e.get("op") == "add", 5.0, since)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="stop")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
