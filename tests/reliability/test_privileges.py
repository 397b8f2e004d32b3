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
from tests.lablib import wait_until
from tests.reliability.conftest import FaultRow, Running, exabgp_pids, ns_pids
from tests.unprivileged import AS_NOBODY, PublicInstall, public_install

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"


class UnprivilegedSidecar(Sidecar):
    """``anycast-announcer run`` as user nobody, without any capability."""

    def __init__(self, lab: Lab, node: str, config: dict[str, Any], install: PublicInstall) -> None:
        super().__init__(lab, node, config, install.root)
        self.install = install

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = self.lab.popen(
                self.node,
                [
                    *AS_NOBODY,
                    self.install.python,
                    "-m",
                    "anycast_announcer",
                    "run",
                    "-c",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.install.env,
            )


@pytest.fixture
def public_dir() -> Iterator[PublicInstall]:
    """The project copied where nobody can read it (pytest's tmp_path is private to root,
    and so may be the clone), with an ExaBGP launcher on the same interpreter."""
    path = Path(tempfile.mkdtemp(prefix="anycast-rel-"))
    try:
        install = public_install(path)
        launcher = path / "exabgp"
        pythonpath = install.env["PYTHONPATH"]
        launcher.write_text(
            f'#!/bin/sh\nPYTHONPATH={pythonpath} exec {install.python} -m exabgp "$@"\n'
        )
        launcher.chmod(0o755)
        yield install
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _config(public_dir: PublicInstall) -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["exabgp"] = {"executable": str(public_dir.root / "exabgp")}
    return config


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_runs_as_nobody_without_managed_addresses(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow], public_dir: PublicInstall
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
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow], public_dir: PublicInstall
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
