"""The command lines that run the lab traffic tool and the lab service in a node."""

from __future__ import annotations

import sys
from pathlib import Path

from anycast_announcer.netlab import service as lab_service
from anycast_announcer.netlab import traffic


def test_options_become_dashed_flags_in_order() -> None:
    line = traffic.command(
        "hold", "10.255.0.1:8080", sessions=3, interval=0.25, ready_file=Path("/tmp/r.json")
    )
    assert line == [
        sys.executable,
        "-m",
        "anycast_announcer.netlab.traffic",
        "hold",
        "--target",
        "10.255.0.1:8080",
        "--sessions",
        "3",
        "--interval",
        "0.25",
        "--ready-file",
        "/tmp/r.json",
    ]


def test_the_service_listens_on_each_address() -> None:
    assert lab_service.command("srv1", "10.255.0.1:8080", "[fd00:255::1]:8080") == [
        sys.executable,
        "-m",
        "anycast_announcer.netlab.service",
        "--name",
        "srv1",
        "--listen",
        "10.255.0.1:8080",
        "--listen",
        "[fd00:255::1]:8080",
    ]
