"""Fixtures for the reliability suite: the lab, process bookkeeping and the results file.

Every test injects one fault into the single-leaf lab (real FRR, real ExaBGP, real TCP)
and fills a :class:`FaultRow`: what was injected, whether the fabric survived it, how many
stale (announced while unhealthy / after death) or lost (healthy but missing) routes were
seen, and the figures measured. Rows are merged into ``results/reliability.json`` by fault
name, so running one file updates its rows and keeps the others;
``python -m tests.reliability.report`` turns the file into the table in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab, traffic
from anycast_announcer.netlab import service as lab_service
from tests.integration.sidecars import (
    ANYCAST_V4,
    Service,
    Sidecar,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import (
    REPO_ROOT,
    SINGLE_LEAF,
    deployed,
    require_lab_host,
    unique_lab_name,
    wait_until,
)

RESULTS_FILE = Path(
    os.environ.get("RELIABILITY_RESULTS", REPO_ROOT / "results" / "reliability.json")
)


@dataclass
class FaultRow:
    """One fault and what it did to the fabric."""

    fault: str
    injected: str
    test: str
    survived: bool = False
    stale_routes: int = 0
    lost_routes: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


class Results:
    """Rows of this session, merged into the results file when the session ends."""

    def __init__(self) -> None:
        self.rows: list[FaultRow] = []

    def write(self) -> None:
        if not self.rows:
            return
        existing: dict[str, Any] = {}
        try:
            existing = {row["fault"]: row for row in json.loads(RESULTS_FILE.read_text())["rows"]}
        except (OSError, ValueError, KeyError, TypeError):
            existing = {}
        for row in self.rows:
            existing[row.fault] = {
                **asdict(row),
                "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        tmp = RESULTS_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps({"rows": list(existing.values())}, indent=1) + "\n")
        tmp.replace(RESULTS_FILE)


@pytest.fixture(scope="session")
def results() -> Iterator[Results]:
    collected = Results()
    yield collected
    collected.write()


@pytest.fixture
def fault(results: Results, request: pytest.FixtureRequest) -> Callable[[str, str], FaultRow]:
    """``fault(name, injected)`` opens this test's row; the test marks it survived at the end."""

    def open_row(name: str, injected: str) -> FaultRow:
        row = FaultRow(fault=name, injected=injected, test=request.node.nodeid)
        results.rows.append(row)
        return row

    return open_row


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_host()
    with deployed(SINGLE_LEAF, name=unique_lab_name("rel")) as deployed_lab:
        yield deployed_lab


class Running:
    """Everything a test started or changed; undone at teardown in reverse order."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.sidecars: list[Sidecar] = []
        self._undo: list[Callable[[], object]] = []

    def service(self, node: str, *listens: str) -> Service:
        service = Service(self.lab, node)
        if listens:
            service.process = self.lab.popen(
                node,
                lab_service.command(node, *listens),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            service.start()
        self.on_cleanup(service.kill)
        return service

    def process(self, node: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = self.lab.popen(node, argv, **kwargs)

        def kill() -> None:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)

        self.on_cleanup(kill)
        return proc

    def sidecar(
        self, node: str, config: dict[str, Any] | None = None, *, start: bool = True, **extra: Any
    ) -> Sidecar:
        sidecar = Sidecar(
            self.lab, node, config or sidecar_config(node, 10_000, **extra), self.workdir
        )
        self.sidecars.append(sidecar)
        self.on_cleanup(sidecar.stop)
        if start:
            sidecar.start()
        return sidecar

    def on_cleanup(self, undo: Callable[[], object]) -> None:
        self._undo.append(undo)

    def close(self) -> None:
        errors = []
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception as error:  # keep undoing; report the first at the end
                errors.append(error)
        self._undo.clear()
        if errors:
            raise errors[0]


@pytest.fixture
def running(lab: Lab, tmp_path: Path) -> Iterator[Running]:
    state = Running(lab, tmp_path)
    try:
        yield state
    finally:
        for sidecar in state.sidecars:  # shown by pytest only when the test failed
            print(f"--- {sidecar.node} sidecar log tail ---\n{sidecar.log_tail(40)}")
        state.close()
        wait_until(
            lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
            timeout=15,
            message="leaf1 still routes the anycast prefix after the test",
        )
        assert not exabgp_pids(lab, "srv1"), "an ExaBGP outlived the test on srv1"
        assert not exabgp_pids(lab, "srv2"), "an ExaBGP outlived the test on srv2"


# -- processes in a node ------------------------------------------------------------------


def ns_pids(lab: Lab, node: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", lab.ns(node)], capture_output=True, text=True, check=True
    ).stdout
    return [int(pid) for pid in out.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def exabgp_pids(lab: Lab, node: str) -> list[int]:
    return [pid for pid in ns_pids(lab, node) if "exabgp server" in cmdline(pid)]


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def shares(lab: Lab, count: int, target: str = "10.255.0.1:8080") -> dict[str, Any]:
    """What ``count`` new client connections to the anycast service see, from the client."""
    result = lab.run(
        "client",
        traffic.command("shares", target, count=count),
        timeout=120,
    )
    return dict(json.loads(result.stdout))


def event_time(event: dict[str, Any]) -> float:
    """The wall-clock time of a JSON log event (structlog's ISO timestamp)."""
    from datetime import datetime

    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
