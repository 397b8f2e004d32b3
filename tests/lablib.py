"""Helpers for tests that need a lab: unique names, a deploy-and-always-destroy context, polling.

from tests.lablib import SINGLE_LEAF, deployed, require_lab_host, wait_until

def test_something() -> None:
    require_lab_host()
    with deployed(SINGLE_LEAF) as lab:
        wait_until(lambda: "10.255.0.1/32" in lab.vtysh("leaf1", "show ip route"),
                   timeout=10, message="leaf1 never learnt the anycast route")
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from anycast_announcer.netlab import Lab, Topology
from tests.prerequisites import unavailable

RecordProperty = Callable[[str, object], None]
"""The type of pytest's ``record_property`` fixture (pytest exports no name for it)."""

__all__ = [
    "REPO_ROOT",
    "SINGLE_LEAF",
    "deployed",
    "require_lab_host",
    "unique_lab_name",
    "wait_until",
]

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
SINGLE_LEAF = REPO_ROOT / "containerlab" / "single-leaf" / "single-leaf.clab.yml"


def unique_lab_name(prefix: str = "t") -> str:
    """A lab name no other run on this machine uses; short so namespace names stay short."""
    return f"{prefix}{secrets.token_hex(3)}"


def require_lab_host() -> None:
    """Skip the calling test unless we are root with FRR installed; in CI, fail instead.

    A developer without root can still run the unit tests, but CI (CI=true) must never
    count a lab test it could not run as anything but a failure.
    """
    problem = None
    if os.geteuid() != 0:
        problem = "lab tests need root (network namespaces)"
    elif not Path("/usr/lib/frr/zebra").exists() or shutil.which("vtysh") is None:
        problem = "lab tests need FRR (/usr/lib/frr/zebra and vtysh): run `make deps`"
    if problem is not None:
        unavailable(problem)


@contextmanager
def deployed(
    topology_path: str | Path, *, name: str | None = None, **deploy_kwargs: Any
) -> Iterator[Lab]:
    """Deploy a lab under a unique name and destroy it on the way out, whatever happened."""
    lab = Lab(Topology.load(topology_path), name=name or unique_lab_name())
    try:
        lab.deploy(**deploy_kwargs)
        yield lab
    finally:
        lab.destroy()


def wait_until(
    predicate: Callable[[], T | None], timeout: float, message: str, interval: float = 0.2
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    Raises AssertionError with ``message`` and the last value (or exception) seen
    once ``timeout`` seconds have passed. An exception from the predicate counts
    as "not yet".
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # not there yet; keep it for the failure message
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (waited {timeout:g}s; last observed: {last!r})")
        time.sleep(interval)
