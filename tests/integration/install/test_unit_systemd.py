"""The shipped unit (configs/anycast-announcer.service, verbatim) under a real systemd.

The guest is installed by the README's production path, ``make install`` from a clone
(its wheelhouse made on the host). It runs as its own user with CAP_NET_ADMIN (it adds
the anycast address), writes its drain state in its StateDirectory under
ProtectSystem=strict, so a drain survives ``systemctl restart``, and ``systemctl reload``
applies a changed config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.install.systemd_system import (
    SystemManager,
    require_system_manager,
    system_manager,
)
from tests.lablib import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration

UNIT = "anycast-announcer.service"
PREFIX = "/opt/anycast-announcer"
CLI = f"{PREFIX}/bin/anycast-announcer"
TOKEN = "/etc/anycast-announcer/token"  # noqa: S105  # a path, not a secret
ANYCAST = "10.255.0.1"


def _config(services: list[str]) -> dict[str, Any]:
    return {
        "bgp": {
            "local_as": 65001,
            "router_id": "10.0.1.2",
            # Nobody answers: the drain and the reload do not need a session.
            "peers": [{"address": "10.0.1.1", "peer_as": 65100}],
        },
        "services": [
            {"name": name, "check": {"type": "command", "argv": ["/bin/true"]}, "interval": 1}
            for name in services
        ],
        "prefixes": [
            {
                "prefix": f"{ANYCAST}/32",
                "services": services[:1],
                "bandwidth_mbps": 10_000,
                "manage_address": True,
            }
        ],
        "drain": {"state_file": "/var/lib/anycast-announcer/drain.json"},
        "http": {"listen": "127.0.0.1:9179", "token_file": TOKEN},
        "logging": {"format": "json"},
    }


# Run in the guest before it boots: the README's production install, as an operator types
# it (`make install` from a clone), then the README's token and config steps. pip reads
# the wheelhouse made on the host: the guest has a network namespace of its own.
_SETUP = f"""set -e
cd /usr/src/anycast-announcer
export PIP_NO_INDEX=1 PIP_FIND_LINKS=/usr/src/wheelhouse
make install >/install.log 2>&1 || {{ cat /install.log; exit 1; }}
chown anycast-announcer: {TOKEN}
chmod 0600 {TOKEN}
"""

# What `make install` reads from the clone.
_CLONE = ("Makefile", "constraints.txt", "pyproject.toml", "README.md", "LICENSE")
_CLONE_DIRS = ("anycast_announcer", "configs")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def _seed(seed: Path) -> None:
    """The clone and a wheelhouse of its dependencies under /usr/src, the config and
    token the README has the operator write, and the setup script that installs."""
    src = seed / "usr" / "src" / "anycast-announcer"
    src.mkdir(parents=True)
    for name in _CLONE:
        shutil.copy2(REPO_ROOT / name, src / name)
    for name in _CLONE_DIRS:
        shutil.copytree(REPO_ROOT / name, src / name, ignore=_IGNORE)
    wheelhouse = seed / "usr" / "src" / "wheelhouse"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "-d", str(wheelhouse)),
            *("-c", str(REPO_ROOT / "constraints.txt"), str(src), "setuptools>=68", "wheel"),
        ],
        check=True,
        capture_output=True,
    )
    etc = seed / "etc" / "anycast-announcer"
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text(json.dumps(_config(["web"])))
    (etc / "token").write_text("t" * 32 + "\n")
    (seed / "seed-setup.sh").write_text(_SETUP)


@pytest.fixture
def guest(tmp_path: Path) -> Iterator[SystemManager]:
    require_system_manager()
    seed = tmp_path / "seed"
    _seed(seed)
    with system_manager(tmp_path, seed, [UNIT]) as manager:
        yield manager


def _status(guest: SystemManager) -> dict[str, Any]:
    result = guest.run([CLI, "status", "--json"], check=False)
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _prefix(guest: SystemManager) -> dict[str, Any]:
    (prefix,) = _status(guest)["prefixes"]
    assert isinstance(prefix, dict)
    return prefix


def _main_pid_status(guest: SystemManager) -> dict[str, str]:
    pid = guest.systemctl("show", "-P", "MainPID", UNIT).stdout.strip()
    text = guest.run(["cat", f"/proc/{pid}/status"]).stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_unit_drain_survives_restart_and_reload_applies(guest: SystemManager) -> None:
    guest.wait_active(UNIT)
    # Its own user, with exactly CAP_NET_ADMIN (bit 12), and the address it added.
    uid = guest.run(["id", "-u", "anycast-announcer"]).stdout.strip()
    proc = _main_pid_status(guest)
    assert proc["Uid"].split()[0] == uid != "0"
    assert int(proc["CapAmb"], 16) == 1 << 12, proc["CapAmb"]
    assert ANYCAST in guest.run(["ip", "-4", "addr", "show", "dev", "lo"]).stdout

    drain = guest.run([CLI, "drain", "--reason", "unit test", "--token-file", TOKEN], check=False)
    assert drain.returncode == 0, drain.stdout + drain.stderr
    wait_until(
        lambda: _prefix(guest)["state"] == "drained",
        timeout=30,
        message=f"the drain never completed: {_prefix(guest)}",
    )
    state = guest.run(["cat", "/var/lib/anycast-announcer/drain.json"], check=False)
    assert state.returncode == 0, guest.journal(UNIT)[-3000:]

    guest.systemctl("restart", UNIT)
    guest.wait_active(UNIT)
    prefix = _prefix(guest)
    assert (prefix["drain_reason"], prefix["drain_origin"]) == ("unit test", "restored"), prefix
    assert prefix["state"] in {"draining", "drained"}, prefix
    assert "drain_state_not_saved" not in guest.journal(UNIT)

    guest.run(
        [
            "sh",
            "-c",
            f"cat > /etc/anycast-announcer/config.yaml <<'EOF'\n"
            f"{json.dumps(_config(['web', 'db']))}\nEOF",
        ]
    )
    pid_before = guest.systemctl("show", "-P", "MainPID", UNIT).stdout.strip()
    guest.systemctl("reload", UNIT)
    wait_until(
        lambda: {s["name"] for s in _status(guest)["services"]} == {"web", "db"},
        timeout=20,
        message=f"reload not applied:\n{guest.journal(UNIT)[-3000:]}",
    )
    assert guest.systemctl("show", "-P", "MainPID", UNIT).stdout.strip() == pid_before
    assert _prefix(guest)["drain_reason"] == "unit test"
