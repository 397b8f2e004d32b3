"""Least privilege: the sidecar runs as nobody when it does not manage addresses, and
fails with a clear message (no traceback) when it must add an address without
CAP_NET_ADMIN."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import ANYCAST_V4, Sidecar, kernel_nexthops, measure, sidecar_config
from tests.lablib import REPO_ROOT, wait_until
from tests.reliability.conftest import FaultRow, Running, exabgp_pids, ns_pids

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
AS_NOBODY = [
    "setpriv",
    "--reuid",
    "nobody",
    "--regid",
    "nogroup",
    "--clear-groups",
    "--inh-caps=-all",
    "--",
]


# This machine's venv interpreter lives under /root (mode 0700), which nobody cannot
# traverse; a packaged install would use the system interpreter, so do that here: Debian's
# python3.11 with the venv's site-packages, and ExaBGP started the same way.
SYSTEM_PYTHON = "/usr/bin/python3.11"
SITE = f"{REPO_ROOT}/.venv/lib/python3.11/site-packages"


class UnprivilegedSidecar(Sidecar):
    """``anycast-announcer run`` as user nobody, without any capability."""

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = self.lab.popen(
                self.node,
                [
                    *AS_NOBODY,
                    SYSTEM_PYTHON,
                    "-m",
                    "anycast_announcer",
                    "run",
                    "-c",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={"PYTHONPATH": f"{REPO_ROOT}:{SITE}", "PYTHONDONTWRITEBYTECODE": "1"},
            )


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory nobody can read (pytest's tmp_path is private to root), holding an
    ExaBGP launcher on the system interpreter."""
    path = Path(tempfile.mkdtemp(prefix="anycast-rel-"))
    path.chmod(0o755)
    launcher = path / "exabgp"
    launcher.write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} -m exabgp "$@"\n')
    launcher.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _config(public_dir: Path) -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["exabgp"] = {"executable": str(public_dir / "exabgp")}
    return config


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_runs_as_nobody_without_managed_addresses(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow], public_dir: Path
) -> None:
    """As nobody, with no capabilities: it announces while healthy and withdraws when the
    service dies; its ExaBGP runs as nobody too."""
    row = fault("unprivileged_user", "sidecar started as nobody (setpriv, no capabilities)")
    service = running.service("srv1")
    sidecar = UnprivilegedSidecar(lab, "srv1", _config(public_dir), public_dir)
    running.on_cleanup(sidecar.stop)
    sidecar.start()
    announce = measure(
        lambda: set(kernel_nexthops(lab, "leaf1", ANYCAST_V4)) == {SRV1},
        timeout=20,
        message=f"never announced as nobody:\n{sidecar.log_tail()}",
    )
    assert sidecar.process is not None
    assert _uid(sidecar.process.pid) == 65534
    (exabgp,) = exabgp_pids(lab, "srv1")
    assert _uid(exabgp) == 65534
    service.kill()
    withdraw = measure(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=10,
        message="not withdrawn as nobody",
    )
    sidecar.stop()
    assert sidecar.process.returncode == 0, sidecar.log_tail()
    row.figures = {
        "announce_s": round(announce, 3),
        "withdraw_after_service_death_s": round(withdraw, 3),
        "uid": 65534,
    }
    row.survived = True
    print(row.figures)


def test_managed_address_without_cap_net_admin_fails_clearly(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow], public_dir: Path
) -> None:
    """As nobody with ``manage_address: true`` for an address that is not on lo: exit 1
    with one ``sidecar_failed`` line naming the address and the permission problem; no
    traceback, no ExaBGP left behind, nothing announced."""
    row = fault("no_cap_net_admin", "manage_address: true as nobody, address absent")
    config = _config(public_dir)
    config["prefixes"] = [
        {
            "prefix": "10.255.0.3/32",
            "services": ["web"],
            "bandwidth_mbps": 10_000,
            "manage_address": True,
        }
    ]
    sidecar = UnprivilegedSidecar(lab, "srv1", config, public_dir)
    running.on_cleanup(sidecar.stop)
    sidecar.start()
    code = sidecar.wait(timeout=20)
    output = sidecar.log_path.read_text()
    assert code == 1, output
    assert "Traceback" not in output, output
    (failed,) = sidecar.events("sidecar_failed")
    assert "10.255.0.3" in failed["error"]
    assert "CAP_NET_ADMIN" in failed["error"], failed
    wait_until(lambda: not exabgp_pids(lab, "srv1"), timeout=5, message="ExaBGP left behind")
    assert not [pid for pid in ns_pids(lab, "srv1") if pid == sidecar.process.pid]  # type: ignore[union-attr]
    row.figures = {"exit_code": code, "error": failed["error"]}
    row.survived = True
    print(row.figures)
