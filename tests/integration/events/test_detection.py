"""Detection, the owner of the event sources, on the real kernel in this namespace:
what each source sees becomes the right core input, and a reload moves the watches."""

from __future__ import annotations

import ipaddress
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from anycast_announcer.config import Config
from anycast_announcer.core.inputs import AddressChanged, Input, ServiceFailed
from anycast_announcer.workers.detection import Detection
from tests.integration.events.support import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    proc = subprocess.Popen(["sleep", "600"])
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(f"{proc.pid}\n")
    try:
        yield proc, pid_file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _config(port: int, pid_file: Path | None, unit: str | None = None) -> Config:
    service: dict[str, Any] = {
        "name": "web",
        "check": {"type": "tcp", "host": "127.0.0.1", "port": port},
    }
    if pid_file is not None:
        service["pid_file"] = str(pid_file)
    if unit is not None:
        service["systemd_unit"] = unit
    return Config.model_validate(
        {
            "bgp": {
                "local_as": 65001,
                "router_id": "10.0.1.2",
                "peers": [{"address": "10.0.1.1", "peer_as": 65100}],
            },
            "services": [service],
            "prefixes": [{"prefix": "127.0.0.1/32", "services": ["web"]}],
            "detection": {"systemd_bus": "/nonexistent/bus"},
        }
    )


async def test_each_source_becomes_a_core_input(
    listener: socket.socket, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    proc, pid_file = sleeper
    seen: list[Input] = []
    detection = Detection(seen.append)
    port = listener.getsockname()[1]
    await detection.open(_config(port, pid_file))
    try:
        assert seen == [AddressChanged("lo", ipaddress.ip_address("127.0.0.1"), True)]
        listener.close()
        await eventually(lambda: len(seen) >= 2, "the closed listener was not reported")
        assert seen[1] == ServiceFailed("web", "listener", f"listener closed: 127.0.0.1:{port}")
        proc.kill()
        await eventually(lambda: len(seen) >= 3, "the process exit was not reported")
        assert seen[2] == ServiceFailed("web", "process", f"process exited: pid {proc.pid}")
    finally:
        detection.close()


async def test_a_reload_moves_the_watches(
    tmp_path: Path, listener: socket.socket, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    proc, pid_file = sleeper
    seen: list[Input] = []
    detection = Detection(seen.append)
    await detection.open(_config(listener.getsockname()[1], pid_file))
    try:
        other = socket.socket()
        other.bind(("127.0.0.1", 0))
        other.listen()
        with other:
            await detection.configure(_config(other.getsockname()[1], None))
            seen.clear()
            listener.close()  # no longer watched
            proc.kill()  # no pid file any more
            other.close()  # the watched one
            await eventually(lambda: seen, "the newly watched listener was not reported")
        assert [item.source for item in seen if isinstance(item, ServiceFailed)] == ["listener"]
    finally:
        detection.close()


async def test_an_unreachable_bus_leaves_the_other_sources_running(
    listener: socket.socket,
) -> None:
    seen: list[Input] = []
    detection = Detection(seen.append)
    with capture_logs() as logs:
        await detection.open(_config(listener.getsockname()[1], None, unit="web.service"))
    try:
        (warning,) = [e for e in logs if e["event"] == "unit_watch_unavailable"]
        assert warning["units"] == ["web.service"]
        listener.close()
        await eventually(lambda: len(seen) >= 2, "the listener watch stopped with the bus")
    finally:
        detection.close()
