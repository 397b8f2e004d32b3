"""Running real sidecars and services inside lab nodes, and reading the leaf's tables."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from anycast_announcer.netlab import service as lab_service

ANYCAST_V4 = "10.255.0.1/32"
ANYCAST_V6 = "fd00:255::1/128"
SERVICE_PORT = 8080

# Per server of the single-leaf lab: (AS, index of its /24 toward leaf1).
SERVERS = {"srv1": (65001, 1), "srv2": (65002, 2)}


def sidecar_config(node: str, bandwidth_mbps: float, **prefix_extra: Any) -> dict[str, Any]:
    """A fast-reacting sidecar config for a server of the single-leaf lab."""
    asn, index = SERVERS[node]
    prefix_common = {
        "services": ["web"],
        "bandwidth_mbps": bandwidth_mbps,
        "communities": [f"{asn}:100"],
        **prefix_extra,
    }
    return {
        "bgp": {
            "local_as": asn,
            "router_id": f"10.0.{index}.2",
            "hold_time": 3,
            "peers": [
                {"address": f"10.0.{index}.1", "peer_as": 65100},
                {"address": f"fd00:{index}::1", "peer_as": 65100},
            ],
        },
        "services": [
            {
                "name": "web",
                "check": {"type": "tcp", "host": "10.255.0.1", "port": SERVICE_PORT},
                "interval": 0.5,
                "timeout": 0.25,
                "rise": 2,
                "fall": 2,
            }
        ],
        "prefixes": [
            {"prefix": ANYCAST_V4, **prefix_common},
            {"prefix": ANYCAST_V6, **prefix_common},
        ],
        "http": {"listen": ""},
        "logging": {"format": "json", "level": "info"},
    }


class Sidecar:
    """One ``anycast-announcer run`` inside a lab node, logging JSON to a file."""

    def __init__(self, lab: Lab, node: str, config: dict[str, Any], workdir: Path) -> None:
        self.lab = lab
        self.node = node
        self.config_path = workdir / f"{node}.yaml"
        self.log_path = workdir / f"{node}.log"
        self.write_config(config)
        self.process: subprocess.Popen[Any] | None = None

    def write_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = self.lab.popen(
                self.node,
                [sys.executable, "-m", "anycast_announcer", "run", "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go; safe to call twice."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events written so far (optionally only those called ``name``)."""
        events = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                events.append(event)
        return events

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


class Service:
    """The lab's TCP service on the anycast addresses of a node."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.lab = lab
        self.node = node
        self.process: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        self.process = self.lab.popen(
            self.node,
            lab_service.command(
                self.node, f"10.255.0.1:{SERVICE_PORT}", f"[fd00:255::1]:{SERVICE_PORT}"
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def kernel_nexthops(lab: Lab, node: str, prefix: str) -> dict[str, int]:
    """Gateway -> weight of the node's kernel route to ``prefix`` ({} when absent)."""
    family = "-6" if ":" in prefix else "-4"
    result = lab.run(node, ["ip", family, "-j", "route", "show", prefix], check=True)
    routes = json.loads(result.stdout or "[]")
    hops: dict[str, int] = {}
    for route in routes:
        if route.get("protocol") != "bgp":
            continue
        if "nexthops" in route:
            for hop in route["nexthops"]:
                hops[hop["gateway"]] = int(hop.get("weight", 1))
        elif "gateway" in route:
            hops[route["gateway"]] = 1
    return hops


def bgp_paths(lab: Lab, node: str, prefix: str) -> list[dict[str, Any]]:
    """FRR's paths for ``prefix`` on ``node`` ([] when it has none)."""
    afi = "ipv6" if ":" in prefix else "ipv4"
    data = lab.vtysh_json(node, f"show bgp {afi} unicast {prefix} json")
    paths = data.get("paths", []) if isinstance(data, dict) else []
    return list(paths)


def measure(predicate: Any, timeout: float, message: str, interval: float = 0.02) -> float:
    """Seconds until ``predicate()`` is true; AssertionError with ``message`` on timeout."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"{message} (after {timeout}s)")


class Running:
    """Processes a test started; all stopped at teardown, whatever happened."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.sidecars: list[Sidecar] = []
        self.services: list[Service] = []

    def service(self, node: str) -> Service:
        service = Service(self.lab, node)
        service.start()
        self.services.append(service)
        return service

    def sidecar(
        self,
        node: str,
        bandwidth_mbps: float = 10_000,
        service: dict[str, Any] | None = None,
        **extra: object,
    ) -> Sidecar:
        """Start a sidecar; ``service`` updates the service's settings, ``extra`` the
        prefixes'."""
        config = sidecar_config(node, bandwidth_mbps, **extra)
        config["services"][0].update(service or {})
        sidecar = Sidecar(self.lab, node, config, self.workdir)
        sidecar.start()
        self.sidecars.append(sidecar)
        return sidecar

    def close(self) -> None:
        for sidecar in self.sidecars:
            sidecar.stop()
        for service in self.services:
            service.kill()


def announced_via(lab: Lab, *gateways: str) -> bool:
    """leaf1's kernel routes the IPv4 anycast prefix via exactly these gateways."""
    return set(kernel_nexthops(lab, "leaf1", ANYCAST_V4)) == set(gateways)
