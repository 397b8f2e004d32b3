"""A flood of idle API connections cannot withdraw the routes of a real sidecar.

The attack that once worked: a local user holds a few hundred half-sent requests open on
the API port; the sidecar runs out of file descriptors; the next probe's socket() fails,
the service counts as down and the route is withdrawn on the leaf. Here the sidecar runs
with a hard limit of 256 descriptors (so the flood of 1,000 would exhaust it several
times over), and the test watches, on the real FRR leaf, that the route stays announced,
that /healthz keeps answering, and that the sidecar's descriptor count stays bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import ANYCAST_V4, Running, Sidecar, announced_via, sidecar_config
from tests.lablib import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
FD_LIMIT = 256
FLOOD = 1000
FLOOD_SECONDS = 12.0
"""Longer than two header timeouts, so connections are cut and re-opened meanwhile."""


def healthz(lab: Lab) -> int:
    code = (
        "import urllib.request, urllib.error\n"
        "try:\n"
        "    print(urllib.request.urlopen('http://127.0.0.1:9179/healthz', timeout=5).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except Exception as e:\n"
        "    print(0)\n"
    )
    return int(lab.run("srv1", [sys.executable, "-c", code], check=False).stdout.strip() or 0)


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def start_limited(running: Running, config: dict[str, Any]) -> Sidecar:
    """A sidecar under `prlimit --nofile=256:256`: raising the soft limit cannot help it."""
    sidecar = Sidecar(running.lab, "srv1", config, running.workdir)
    with sidecar.log_path.open("ab") as log:
        sidecar.process = running.lab.popen(
            "srv1",
            [
                "prlimit",
                f"--nofile={FD_LIMIT}:{FD_LIMIT}",
                sys.executable,
                "-m",
                "anycast_announcer",
                "run",
                "-c",
                str(sidecar.config_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    running.sidecars.append(sidecar)
    return sidecar


def test_idle_connection_flood_keeps_routes_and_healthz(lab: Lab, running: Running) -> None:
    running.service("srv1")
    config = sidecar_config("srv1", 10_000)
    config["prefixes"] = [p for p in config["prefixes"] if p["prefix"] == ANYCAST_V4]
    config["http"] = {"listen": "127.0.0.1:9179"}
    sidecar = start_limited(running, config)
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=30,
        message=f"never announced:\n{sidecar.log_tail()}",
    )
    assert healthz(lab) == 200
    assert sidecar.process is not None
    # prlimit execs the sidecar, so the pid is the sidecar's own.
    pid = sidecar.process.pid
    baseline = open_fds(pid)

    flooder = lab.popen(
        "srv1",
        [
            sys.executable,
            "-m",
            "tests.integration.flood",
            "127.0.0.1",
            "9179",
            str(FLOOD),
            str(FLOOD_SECONDS),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    observations: list[tuple[bool, int, int]] = []
    try:
        until = time.monotonic() + FLOOD_SECONDS - 1
        time.sleep(1)  # let the flood build up
        while time.monotonic() < until:
            observations.append((announced_via(lab, SRV1), healthz(lab), open_fds(pid)))
            time.sleep(0.3)
        report = json.loads(flooder.communicate(timeout=30)[0].decode().strip().splitlines()[-1])
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait(timeout=10)

    print(f"flood report: {report}; fds baseline {baseline}, max {max(o[2] for o in observations)}")
    assert report["opened"] >= FLOOD, report
    assert report["closed_by_server"] > 0, "the server never shed a connection"
    assert len(observations) >= 5, sidecar.log_tail(40)
    assert all(announced for announced, _, _ in observations), observations
    assert all(status == 200 for _, status, _ in observations), observations
    assert max(fds for _, _, fds in observations) < FD_LIMIT - 32, observations
    assert not [e for e in sidecar.events("service_state_changed") if e.get("new") == "down"]
    assert announced_via(lab, SRV1)
