"""The listener watch under Debian 12's default ``net.core.optmem_max`` (20,480 bytes).

The kernel charges the watch's socket filter to the socket's option memory; at 20,480
bytes a filter for every one of MAX_FILTER_PORTS ports does not fit (ENOMEM), and the
sidecar used to fail at start. Now the lowest ports that fit are watched, a warning says
how many, and the watch still works for them. The sysctl is set in a namespace of this
test (it is per network namespace on recent kernels, such as the 6.18 this runs on); on a
kernel where it is global, the global value is set and put back afterwards.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from anycast_announcer.events.listeners import ListenerGone, ListenerWatch, ListenTarget
from anycast_announcer.events.sockdiag import MAX_FILTER_PORTS
from tests.integration.events.netns import entered
from tests.integration.events.support import eventually
from tests.lablib import require_lab_host

pytestmark = pytest.mark.integration

DEBIAN_12_OPTMEM_MAX = 20480
LOOPBACK = ipaddress.ip_address("127.0.0.1")
FIRST_PORT = 20000


def _sysctl(namespace: str | None, value: int | None = None) -> int:
    """Read (and first write, if given) net.core.optmem_max, in the namespace or globally."""
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    if value is not None:
        subprocess.run([*prefix, "sysctl", "-qw", f"net.core.optmem_max={value}"], check=True)
    out = subprocess.run(
        [*prefix, "sysctl", "-n", "net.core.optmem_max"], check=True, capture_output=True
    )
    return int(out.stdout)


@pytest.fixture
def small_optmem_namespace() -> Iterator[str]:
    """A namespace (lo up) whose sockets get Debian 12's default option memory."""
    require_lab_host()
    name = f"aaoptm{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    restore_global: int | None = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        per_namespace = subprocess.run(
            ["ip", "netns", "exec", name, "test", "-e", "/proc/sys/net/core/optmem_max"],
            check=False,
        )
        if per_namespace.returncode == 0:
            _sysctl(name, DEBIAN_12_OPTMEM_MAX)
        else:
            restore_global = _sysctl(None)
            _sysctl(None, DEBIAN_12_OPTMEM_MAX)
        assert Path("/run/netns", name).exists()
        yield name
    finally:
        if restore_global is not None:
            _sysctl(None, restore_global)
        subprocess.run(["ip", "netns", "delete", name], check=False)


async def test_watch_degrades_to_the_ports_that_fit_and_still_reports(
    small_optmem_namespace: str,
) -> None:
    """Too many ports for the option memory: the lowest are watched, with a warning."""
    seen: list[ListenerGone] = []
    watch = ListenerWatch(seen.append)
    wanted = [ListenTarget(LOOPBACK, FIRST_PORT + i) for i in range(MAX_FILTER_PORTS)]
    with entered(small_optmem_namespace):
        watch.open()
        listener = socket.create_server(("127.0.0.1", FIRST_PORT))
    try:
        with capture_logs() as logs:
            watch.watch(wanted)
        watched = sorted(target.port for target in watch.targets)
        assert 0 < len(watched) < MAX_FILTER_PORTS, "the filter should have been cut"
        assert watched == list(range(FIRST_PORT, FIRST_PORT + len(watched)))
        (warning,) = [e for e in logs if e["event"] == "listener_watch_optmem_limited"]
        assert warning["ports_watched"] == len(watched)
        assert warning["ports_wanted"] == MAX_FILTER_PORTS

        # The watch works for what it kept: the listener on the lowest port closes.
        listener.close()
        await eventually(lambda: seen, "no ListenerGone for a watched port")
        assert seen == [ListenerGone(ListenTarget(LOOPBACK, FIRST_PORT))]
    finally:
        listener.close()
        watch.close()


async def test_open_with_too_many_targets_does_not_fail(small_optmem_namespace: str) -> None:
    """Targets given before open (the sidecar's start): open() cuts them instead of dying."""
    watch = ListenerWatch(lambda event: None)
    watch.watch([ListenTarget(LOOPBACK, FIRST_PORT + i) for i in range(MAX_FILTER_PORTS)])
    with entered(small_optmem_namespace):
        watch.open()
    try:
        assert 0 < len(watch.targets) < MAX_FILTER_PORTS
    finally:
        watch.close()
