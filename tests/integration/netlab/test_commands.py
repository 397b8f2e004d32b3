"""Node commands under anycast-netlab: the right Python, a deploy that fails when one
dies, and ``inspect`` telling running from exited."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from anycast_announcer.netlab import Lab, LabError, Topology
from anycast_announcer.netlab.cli import main
from anycast_announcer.netlab.lab import PYTHON_ENV
from tests.lablib import require_lab_host, unique_lab_name, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lab_host() -> None:
    require_lab_host()


def write_topology(tmp_path: Path, nodes: dict[str, Any]) -> Path:
    path = tmp_path / "lab.clab.yml"
    path.write_text(yaml.safe_dump({"name": "x", "topology": {"nodes": nodes}}))
    return path


def test_servers_run_the_python_that_runs_netlab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ANYCAST_PYTHON set, a node's cmd sees this interpreter, not python3 on PATH."""
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    seen = tmp_path / "seen"
    path = write_topology(
        tmp_path,
        {"a": {"kind": "linux", "cmd": f"sh -c 'echo \"${PYTHON_ENV}\" > {seen}; exec sleep 300'"}},
    )
    lab = Lab(Topology.load(path), name=unique_lab_name())
    try:
        lab.deploy(start_cmds=True)
        assert seen.read_text().strip() == sys.executable
    finally:
        lab.destroy()


def test_a_command_that_dies_fails_the_deploy_with_its_log(tmp_path: Path) -> None:
    """Like a server whose Python lacks structlog: deploy fails, shows why, cleans up."""
    path = write_topology(
        tmp_path,
        {
            "ok": {"kind": "linux", "cmd": "sleep 300"},
            "broken": {
                "kind": "linux",
                "cmd": "sh -c 'echo \"No module named structlog\" >&2; exit 1'",
            },
        },
    )
    lab = Lab(Topology.load(path), name=unique_lab_name())
    try:
        with pytest.raises(LabError) as raised:
            lab.deploy(start_cmds=True)
        message = str(raised.value)
        assert "node broken: cmd exited with status 1 during deploy" in message
        assert "No module named structlog" in message
        assert not lab.is_deployed()
    finally:
        lab.destroy()


def test_the_cli_deploy_exits_non_zero_and_prints_the_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_topology(
        tmp_path, {"broken": {"kind": "linux", "cmd": "sh -c 'echo boom-4711 >&2; exit 3'"}}
    )
    name = unique_lab_name()
    try:
        assert main(["deploy", "-t", str(path), "--name", name, "--wait-bgp", "none"]) != 0
        err = capsys.readouterr().err
        assert "cmd exited with status 3" in err
        assert "boom-4711" in err
    finally:
        Lab(Topology.load(path), name=name).destroy()


def test_inspect_shows_running_and_exited_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_topology(
        tmp_path,
        {"a": {"kind": "linux", "cmd": "sleep 300"}, "b": {"kind": "linux"}},
    )
    lab = Lab(Topology.load(path), name=unique_lab_name())
    try:
        lab.deploy(start_cmds=True)
        statuses = {status.node: status for status in lab.inspect()}
        assert statuses["a"].command == "running"
        assert statuses["b"].command is None
        assert main(["inspect", "-t", str(path), "--name", lab.name, "--format", "json"]) == 0
        listed = {n["node"]: n["command"] for n in json.loads(capsys.readouterr().out)}
        assert listed == {"a": "running", "b": None}

        cmd = next(p for p in statuses["a"].processes if p.name == "cmd")
        os.kill(cmd.pid, signal.SIGKILL)
        wait_until(
            lambda: next(s for s in lab.inspect() if s.node == "a").command == "exited",
            timeout=10,
            message="inspect kept reporting the killed cmd as running",
        )
        assert main(["inspect", "-t", str(path), "--name", lab.name]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:5] == ["NODE", "NAMESPACE", "KIND", "STATE", "CMD"]
        row_a = next(line for line in table if line.startswith("a "))
        assert row_a.split()[3:5] == ["degraded", "exited"]
    finally:
        lab.destroy()
