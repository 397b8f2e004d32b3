"""The shipped systemd unit: Type=notify with a watchdog, restarted when it fires."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "configs" / "anycast-announcer.service"


def service_section() -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return dict(parser["Service"])


def test_the_unit_is_notify_with_a_watchdog() -> None:
    service = service_section()
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    watchdog = service["WatchdogSec"]
    assert watchdog.endswith("s")
    assert float(watchdog.removesuffix("s")) >= 10, "pings run on the event loop: leave room"
    assert service["Restart"] in {"on-failure", "always", "on-watchdog"}


def test_the_unit_still_withdraws_on_stop() -> None:
    service = service_section()
    assert service["KillSignal"] == "SIGTERM"
    assert service["ExecStart"].endswith("run -c /etc/anycast-announcer/config.yaml")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own parser finds nothing wrong (the binary path is swapped for one that
    exists here, since the unit names the installed location)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "anycast-announcer.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/anycast-announcer/bin/", "/usr/bin/")
    )
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "anycast-announcer is not executable" not in line and line.strip()
    ]
    assert problems == []
