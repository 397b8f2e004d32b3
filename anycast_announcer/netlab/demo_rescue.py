"""The demo's second act: long-lived sessions across a failure, flow rescue off, then on.

The client holds long-lived sessions (a ping every 0.25 s) spread by the fabric over
every server; then one server's service dies and its sidecar withdraws. Its own sessions
are lost either way: the process that held them is gone. Without rescue, the fabric's
rehash also moves sessions of healthy servers onto servers that do not hold them, which
reset them. With rescue, those servers hand the packets on to the owner, and no session
of a healthy server breaks.

Rescue is switched off by reloading every sidecar without its ``rescue:`` section and
running ``anycast-announcer rescue remove``, and back on by reloading the lab's config.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from anycast_announcer.netlab import service as lab_service
from anycast_announcer.netlab import traffic
from anycast_announcer.netlab.errors import NetlabError
from anycast_announcer.netlab.lab import Lab

__all__ = ["Servers", "sessions_act"]

SESSIONS = 300
SETTLE = 6.0
"""Seconds after the withdrawal for every broken session to notice (ping timeout 5 s)."""


class Servers:
    """The demo's services and sidecars, each sidecar on a config copy it can re-read."""

    def __init__(self, lab: Lab, configs: dict[str, Path], logs: Path) -> None:
        self.lab = lab
        self.logs = logs
        self.configs = {
            server: yaml.safe_load(path.read_text()) for server, path in configs.items()
        }
        self.services: dict[str, subprocess.Popen[Any]] = {}
        self.sidecars: dict[str, subprocess.Popen[Any]] = {}

    def config_path(self, server: str) -> Path:
        return self.logs / f"{server}.yaml"

    def start(self) -> None:
        for server in self.configs:
            self.start_service(server)
            self.write_config(server, rescue=True)
            with (self.logs / f"{server}.log").open("wb") as log:
                argv = ["run", "-c", str(self.config_path(server))]
                self.sidecars[server] = self.lab.popen(
                    server,
                    [sys.executable, "-m", "anycast_announcer", *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )

    def start_service(self, server: str) -> None:
        self.services[server] = self.lab.popen(
            server,
            lab_service.command(server, "10.255.0.1:8080", "[fd00:255::1]:8080"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill_service(self, server: str) -> None:
        self.services[server].kill()
        self.services[server].wait()

    def write_config(self, server: str, *, rescue: bool) -> None:
        config = dict(self.configs[server])
        if not rescue:
            config.pop("rescue", None)
        self.config_path(server).write_text(json.dumps(config, indent=1))

    def events(self, server: str, name: str) -> int:
        count = 0
        for line in (self.logs / f"{server}.log").read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"event": "{name}"' in line:
                count += 1
        return count

    def set_rescue(self, enabled: bool) -> None:
        """Reload every sidecar with or without rescue (removing it when off)."""
        event = "rescue_applied" if enabled else "rescue_unconfigured"
        seen = {server: self.events(server, event) for server in self.configs}
        for server in self.configs:
            self.write_config(server, rescue=enabled)
            self.sidecars[server].send_signal(signal.SIGHUP)
        for server in self.configs:
            _wait(f"{server}'s {event}", lambda s=server: self.events(s, event) > seen[s])  # type: ignore[misc]
            if not enabled:
                self.lab.run(
                    server, [sys.executable, "-m", "anycast_announcer", "rescue", "remove"]
                )


def sessions_act(
    servers: Servers,
    victim: str,
    in_fabric: Callable[[set[str]], bool],
) -> dict[str, dict[str, Any]]:
    """Hold sessions, fail ``victim``, count what broke: rescue off, then on."""
    results = {}
    everyone = set(servers.configs)
    for label, enabled in (("off", False), ("on", True)):
        servers.set_rescue(enabled)
        _wait("every server in the fabric", lambda: in_fabric(everyone))
        results[label] = _one_failure(servers, victim, lambda: in_fabric(everyone - {victim}))
        servers.start_service(victim)
    return results


def _one_failure(servers: Servers, victim: str, withdrawn: Callable[[], bool]) -> dict[str, Any]:
    ready = servers.logs / "hold-ready.json"
    ready.unlink(missing_ok=True)
    hold = servers.lab.popen(
        "client",
        traffic.command(
            "hold", "10.255.0.1:8080", sessions=SESSIONS, interval=0.25, timeout=5, ready_file=ready
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait("the long-lived sessions to open", ready.exists)
        servers.kill_service(victim)
        _wait(f"{victim}'s withdrawal", withdrawn)
        time.sleep(SETTLE)
    finally:
        hold.send_signal(signal.SIGTERM)
    out, _ = hold.communicate(timeout=60)
    summary: dict[str, Any] = json.loads(out)
    broken: dict[str, int] = summary["broken_by_server"]
    return {
        "sessions": summary["total"],
        "own": broken.get(victim, 0),
        "on_victim": summary["started_on"].get(victim, 0),
        "healthy": sum(count for server, count in broken.items() if server != victim),
    }


def _wait(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise NetlabError(f"timed out after {timeout:.0f}s waiting for {what}")
