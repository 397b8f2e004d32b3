"""What every benchmark shares: the lab, the two announcers, FIB watching, costs, statistics.

The two systems under test, configured to match:

- **sidecar**: ``anycast-announcer run`` with TCP checks (its own ExaBGP child);
- **healthcheck**: one ``exabgp server`` whose API processes are ``exabgp healthcheck``
  instances, one per service, checking with a shell command as an operator would
  (``bash -c '</dev/tcp/HOST/PORT'``; Debian has no ``nc`` by default), with
  ``--withdraw-on-down`` (otherwise it only raises the MED), ``--debounce`` (otherwise it
  re-announces every interval, which would only cost it more) and
  ``--fast-interval`` equal to ``--interval`` so both probe at the same pace.
"""

from __future__ import annotations

import json
import math
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from anycast_announcer.routes import link_bandwidth_community
from tests.lablib import REPO_ROOT, unique_lab_name

BENCH_TOPOLOGY = REPO_ROOT / "containerlab" / "bench" / "bench.clab.yml"
ANYCAST = "10.255.0.1"
ANYCAST_PREFIX = "10.255.0.1/32"
SERVICE_PORT = 8080
PROBE_PORT_BASE = 20000
LEAF_AS = 65100
EXABGP = str(Path(sys.executable).with_name("exabgp"))
EXABGP_ENV = {
    "exabgp.daemon.user": "root",
    "exabgp.daemon.daemonize": "false",
    "exabgp.api.cli": "false",
    "exabgp.api.ack": "true",
    "exabgp.tcp.bind": "",
    "exabgp.log.destination": "stdout",
    "exabgp.log.level": "WARNING",
}
"""ExaBGP as root, in the foreground, without named pipes or a listening socket."""


def server_as(index: int) -> int:
    return 65000 + index


def server_address(index: int) -> str:
    return f"10.0.{index}.2"


def leaf_address(index: int) -> str:
    return f"10.0.{index}.1"


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """One row of matching settings for both systems."""

    interval: float
    fall: int
    rise: int
    timeout: float

    @property
    def label(self) -> str:
        return f"interval {self.interval:g} s, fall {self.fall}"


@contextmanager
def bench_lab() -> Iterator[Lab]:
    """The benchmark lab under a unique name, destroyed on the way out."""
    lab = Lab.from_file(BENCH_TOPOLOGY, name=unique_lab_name("bn"))
    try:
        lab.deploy()
        yield lab
    finally:
        lab.destroy()


def _stop(process: subprocess.Popen[Any] | None, timeout: float = 5) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


class LabService:
    """The benchmark service (tests.benchmarks.labtools serve) in a server node."""

    def __init__(
        self,
        lab: Lab,
        node: str,
        workdir: Path,
        probe_ports: int = 0,
        listen: Sequence[str] = (f"{ANYCAST}:{SERVICE_PORT}",),
    ) -> None:
        self.lab, self.node = lab, node
        self.record = workdir / f"{node}-arrivals.json"
        self.probe_ports = probe_ports
        self.listen = tuple(listen)
        """HOST:PORT addresses the service listens on (``[v6]:port`` for IPv6)."""
        self.process: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "tests.benchmarks.labtools",
            "serve",
            "--name",
            self.node,
            *(word for address in self.listen for word in ("--listen", address)),
        ]
        if self.probe_ports:
            argv += [
                "--probe-host",
                ANYCAST,
                "--probe-ports",
                f"{PROBE_PORT_BASE}:{self.probe_ports}",
                "--record",
                str(self.record),
            ]
        self.process = self.lab.popen(
            self.node, argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # Every address bound, not only the first (ss writes them as we do).
            probe = self.lab.run(self.node, ["ss", "-Hltn"], check=False)
            if all(address in probe.stdout for address in self.listen):
                return
            time.sleep(0.05)
        raise RuntimeError(f"service on {self.node} never listened")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def drain(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def abort_sessions(self) -> None:
        """Reset every open session (SIGUSR2): no leftover socket outlives its run."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR2)

    def stop(self) -> dict[str, list[float]]:
        """SIGTERM; the recorded probe arrivals per port (empty without probe ports)."""
        _stop(self.process)
        if self.probe_ports and self.record.exists():
            data: dict[str, list[float]] = json.loads(self.record.read_text(encoding="utf-8"))
            return data
        return {}


def tcp_services(
    count: int, settings: CheckSettings, port: int | None = None
) -> list[dict[str, Any]]:
    """``count`` TCP-checked services: one port each, or all on ``port``."""
    return [
        {
            "name": f"svc{i}",
            "check": {
                "type": "tcp",
                "host": ANYCAST,
                "port": port if port is not None else PROBE_PORT_BASE + i,
            },
            "interval": settings.interval,
            "timeout": settings.timeout,
            "rise": settings.rise,
            "fall": settings.fall,
        }
        for i in range(count)
    ]


class Announcer:
    """Common shape of both systems: start, stop, the processes to account for."""

    name = ""
    process: subprocess.Popen[Any] | None = None
    pin: str | None = None
    """CPU list for ``taskset -c`` (the ceiling run), or None."""

    def _argv(self, argv: list[str]) -> list[str]:
        return ["taskset", "-c", self.pin, *argv] if self.pin else argv

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        _stop(self.process)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


class SidecarRunner(Announcer):
    """``anycast-announcer run`` in a server node, JSON logs to a file."""

    name = "sidecar"

    def __init__(
        self,
        lab: Lab,
        index: int,
        services: list[dict[str, Any]],
        workdir: Path,
        *,
        bandwidth_mbps: float = 10_000,
        extra: dict[str, Any] | None = None,
        http_listen: str = "",
    ) -> None:
        self.lab, self.node = lab, f"srv{index}"
        self.config_path = workdir / f"{self.node}-sidecar.json"
        self.log_path = workdir / f"{self.node}-sidecar.log"
        config: dict[str, Any] = {
            "bgp": {
                "local_as": server_as(index),
                "router_id": server_address(index),
                "hold_time": 3,
                "peers": [{"address": leaf_address(index), "peer_as": LEAF_AS}],
            },
            "services": services,
            "prefixes": [
                {
                    "prefix": ANYCAST_PREFIX,
                    "services": [s["name"] for s in services],
                    "require": "any",
                    "bandwidth_mbps": bandwidth_mbps,
                    # Every trial is a deliberate flap; healthcheck has no dampening.
                    "dampening": {"enabled": False},
                }
            ],
            "allowed_prefixes": ["10.255.0.0/24"],
            # Off unless a benchmark reads /metrics (inside the server's namespace).
            "http": {"listen": http_listen},
            "logging": {"format": "json", "level": "info"},
            **(extra or {}),
        }
        self.config = config
        self.config_path.write_text(json.dumps(config), encoding="utf-8")

    def reload_with_bandwidth(self, bandwidth_mbps: float) -> None:
        """Rewrite the config with another bandwidth and SIGHUP: a real weight change."""
        self.config["prefixes"][0]["bandwidth_mbps"] = bandwidth_mbps
        self.config_path.write_text(json.dumps(self.config), encoding="utf-8")
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = self.lab.popen(
                self.node,
                self._argv(
                    [sys.executable, "-m", "anycast_announcer", "run", "-c", str(self.config_path)]
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == name:
                found.append(event)
        return found


def log_time(event: dict[str, Any]) -> float:
    """A structlog ISO UTC timestamp as epoch seconds."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


class HealthcheckRunner(Announcer):
    """One ``exabgp server`` with one ``exabgp healthcheck`` API process per service."""

    name = "healthcheck"

    def __init__(
        self,
        lab: Lab,
        index: int,
        ports: Sequence[int],
        settings: CheckSettings,
        workdir: Path,
        bandwidth_mbps: float = 10_000,
    ) -> None:
        self.lab, self.node = lab, f"srv{index}"
        self.config_path = workdir / f"{self.node}-exabgp.conf"
        self.log_path = workdir / f"{self.node}-exabgp.log"
        community = link_bandwidth_community(server_as(index), bandwidth_mbps * 1e6)
        # healthcheck's --timeout takes whole seconds; a refused connection fails at once
        # anyway, so the rounding only matters for hung services.
        timeout = max(1, math.ceil(settings.timeout))
        names = [f"hc{i}" for i in range(len(ports))]
        lines = []
        for name, port in zip(names, ports, strict=True):
            # healthcheck reads long options from a file, one per line: no shell quoting
            # inside ExaBGP's ``run`` line.
            options = workdir / f"{self.node}-{name}.conf"
            options.write_text(
                "\n".join(
                    [
                        "silent",
                        f"name = {name}",
                        f"command = bash -c '</dev/tcp/{ANYCAST}/{port}'",
                        f"interval = {settings.interval:g}",
                        f"fast-interval = {settings.interval:g}",
                        f"timeout = {timeout}",
                        f"rise = {settings.rise}",
                        f"fall = {settings.fall}",
                        "withdraw-on-down",
                        "debounce",
                        "no-ip-setup",
                        f"ip = {ANYCAST_PREFIX}",
                        f"extended-community = {community}",
                    ]
                )
                + "\n",
                encoding="utf-8",
            )
            options.chmod(0o644)
            argv = [EXABGP, "healthcheck", "--config", str(options)]
            lines += [
                f"process {name} {{",
                "    run " + " ".join(argv) + ";",
                "    encoder text;",
                "}",
            ]
        lines += [
            f"neighbor {leaf_address(index)} {{",
            f"    router-id {server_address(index)};",
            f"    local-address {server_address(index)};",
            f"    local-as {server_as(index)};",
            f"    peer-as {LEAF_AS};",
            "    hold-time 3;",
            "    family { ipv4 unicast; }",
            f"    api {{ processes [ {', '.join(names)} ]; }}",
            "}",
        ]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.config_path.chmod(0o644)

    def start(self) -> None:
        env = EXABGP_ENV
        with self.log_path.open("ab") as log:
            self.process = self.lab.popen(
                self.node,
                self._argv([EXABGP, "server", str(self.config_path)]),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )


# -- the FIB, watched ----------------------------------------------------------------------


class RouteWatch:
    """``ip monitor route`` in a node; every line about the prefix, stamped on arrival.

    A thread blocks on the pipe and stamps each line with ``time.time()`` the moment it
    is read, so the stamp lags the kernel's change only by a pipe read. Subclasses watch
    another ``ip monitor`` object by overriding ``OBJECT`` and :meth:`_pattern`.
    """

    OBJECT = "route"

    def __init__(self, lab: Lab, node: str, prefix: str = ANYCAST) -> None:
        self.events: queue.Queue[tuple[float, bool]] = queue.Queue()
        self._prefix = prefix
        self.process = lab.popen(
            node,
            ["ip", "-4", "monitor", self.OBJECT],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _pattern(self) -> re.Pattern[str]:
        """A line about the prefix; group 1 is ``Deleted `` on a removal."""
        return re.compile(rf"^(Deleted )?{re.escape(self._prefix)}[ /]")

    def _read(self) -> None:
        assert self.process.stdout is not None
        pattern = self._pattern()
        for line in self.process.stdout:
            now = time.time()
            match = pattern.match(line)
            if match:
                self.events.put((now, match.group(1) is None))

    def clear(self) -> None:
        while not self.events.empty():
            self.events.get_nowait()

    def wait(self, present: bool, timeout: float) -> float | None:
        """The time of the next change to ``present`` (None on timeout)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                stamp, is_present = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if is_present == present:
                return stamp
        return None

    def close(self) -> None:
        _stop(self.process, timeout=2)


def kernel_nexthops(lab: Lab, node: str) -> list[tuple[str, int]]:
    """The node's next hops for the anycast prefix, in kernel order, with weights."""
    out = lab.run(node, ["ip", "-4", "-j", "route", "show", ANYCAST_PREFIX], check=False).stdout
    hops: list[tuple[str, int]] = []
    for route in json.loads(out or "[]"):
        if "nexthops" in route:
            hops += [(h["gateway"], int(h.get("weight", 1))) for h in route["nexthops"]]
        elif "gateway" in route:
            hops.append((route["gateway"], 1))
    return hops


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} (after {timeout:g}s)")


def start_hold(
    lab: Lab, target: str, sessions: int, source: str, workdir: Path, tag: str
) -> tuple[subprocess.Popen[Any], Path]:
    """The client holds ``sessions`` long-lived sessions to ``target`` from ``source``
    (``labtools hold``); returns once they are open, with the file its result goes to."""
    ready, result = workdir / f"hold-{tag}.ready", workdir / f"hold-{tag}.json"
    for path in (ready, result):
        path.unlink(missing_ok=True)
    process = lab.popen(
        "client",
        [
            *(sys.executable, "-m", "tests.benchmarks.labtools", "hold", "--target", target),
            *("--sessions", str(sessions), "--ready-file", str(ready)),
            *("--result-file", str(result), "--source", source),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(ready.exists, 60, "the client never opened its sessions")
    return process, result


# -- process costs ---------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime+cutime+cstime seconds) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    cpu = sum(int(v) for v in fields[11:15]) / _TICK
    return int(fields[1]), cpu


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants alive now."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds (own and reaped children's) per live process of the tree."""
    result = {}
    for pid in process_tree(root):
        stat = _stat(pid)
        if stat is not None:
            result[pid] = stat[1]
    return result


def tree_rss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree spent between two samples (new processes count from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# -- statistics and the machine --------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def number(value: float | None, digits: int = 2) -> str:
    """A figure for the report's tables; n/a for a missing or NaN one."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, p99, min, max of ``values``."""
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values, default=math.nan),
        "max": max(values, default=math.nan),
    }


def machine() -> dict[str, str | int]:
    """CPU model, cores, kernel, Python, FRR and ExaBGP versions."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    frr = subprocess.run(
        ["/usr/lib/frr/zebra", "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    exabgp = subprocess.run(
        [EXABGP, "version"], capture_output=True, text=True, check=False
    ).stdout.split()
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "kernel": platform.release(),
        "memory_gib": round(int(memory) / 2**20),
        "python": platform.python_version(),
        "frr": frr[0].split()[-1] if frr else "unknown",
        "exabgp": next((w for w in exabgp if w[:1].isdigit()), " ".join(exabgp)),
    }
