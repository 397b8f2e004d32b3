"""The operator surface of a real sidecar: the CLI and HTTP API inside the server's
namespace, with the effect of each command checked on the real FRR leaf."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.historymodels import SidecarHistory
from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    SERVICE_PORT,
    Running,
    announced_via,
    bgp_paths,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
API = "http://127.0.0.1:9179"


def with_api(tmp_path: Path, token_mode: int = 0o600) -> dict[str, Any]:
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n", encoding="utf-8")
    os.chmod(token, token_mode)
    config = sidecar_config("srv1", 10_000)
    config["http"] = {"listen": "127.0.0.1:9179", "token_file": str(token)}
    config["drain"] = {"graceful_shutdown_hold": 1, "connection_timeout": 5}
    config["prefixes"] = [p for p in config["prefixes"] if p["prefix"] == ANYCAST_V4]
    return config


def cli(lab: Lab, tmp_path: Path, *args: str) -> tuple[int, str]:
    result = lab.run(
        "srv1",
        [sys.executable, "-m", "anycast_announcer", *args],
        check=False,
        env={"ANYCAST_ANNOUNCER_TOKEN_FILE": str(tmp_path / "token")},
    )
    return result.returncode, result.stdout + result.stderr


def test_status_drain_undrain_through_the_cli(lab: Lab, running: Running, tmp_path: Path) -> None:
    """status explains what is announced; drain takes the server out via graceful
    shutdown (seen on leaf1), undrain brings it back; metrics follow."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    sidecar.write_config(with_api(tmp_path))
    sidecar.stop()
    sidecar.start()
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=20,
        message=f"never announced:\n{sidecar.log_tail()}",
    )
    code, output = cli(lab, tmp_path, "status", "--json")
    assert code == 0, output
    status = json.loads(output)
    (prefix,) = status["prefixes"]
    assert prefix["state"] == "announced"
    assert prefix["reason"] == "services up"
    assert {p["address"]: p["state"] for p in status["peers"]}["10.0.1.1"] == "up"
    assert status["exabgp"]["running"] is True
    code, output = cli(lab, tmp_path, "status")
    assert code == 0
    assert "10.255.0.1/32" in output

    code, output = cli(lab, tmp_path, "drain", "--reason", "kernel upgrade")
    assert code == 0, output
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=15,
        message="leaf1 kept srv1 after the drain",
    )
    assert not bgp_paths(lab, "leaf1", ANYCAST_V4)
    states = [e["new"] for e in sidecar.events("prefix_state_changed")]
    assert states[-2:] == ["draining", "drained"]
    graceful = [e for e in sidecar.events("route_announced") if "65535:0" in e["command"]]
    assert graceful, "the drain never sent GRACEFUL_SHUTDOWN"
    code, output = cli(lab, tmp_path, "status", "--json")
    assert json.loads(output)["prefixes"][0]["drain_reason"] == "kernel upgrade"

    metrics = lab.run(
        "srv1",
        [
            sys.executable,
            "-c",
            f"import urllib.request;print(urllib.request.urlopen('{API}/metrics').read().decode())",
        ],
    ).stdout
    assert 'anycast_prefix_announced{prefix="10.255.0.1/32"} 0.0' in metrics

    code, output = cli(lab, tmp_path, "undrain")
    assert code == 0, output
    wait_until(
        lambda: announced_via(lab, SRV1), timeout=10, message="not re-announced after undrain"
    )


def test_wrong_token_is_refused_and_changes_nothing(
    lab: Lab, running: Running, tmp_path: Path
) -> None:
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    sidecar.write_config(with_api(tmp_path))
    sidecar.stop()
    sidecar.start()
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it-0123456789abc", encoding="utf-8")
    os.chmod(wrong, 0o600)
    result = lab.run(
        "srv1",
        [sys.executable, "-m", "anycast_announcer", "drain", "--token-file", str(wrong)],
        check=False,
    )
    assert result.returncode == 1
    assert "invalid bearer token" in result.stdout + result.stderr
    assert announced_via(lab, SRV1)
    assert not sidecar.events("drain_started")


def test_world_readable_token_file_refuses_to_start(
    lab: Lab, running: Running, tmp_path: Path
) -> None:
    """A token others can read is no secret: the sidecar does not start, announces nothing."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    sidecar.write_config(with_api(tmp_path, token_mode=0o644))
    sidecar.stop()
    sidecar.start()
    assert sidecar.wait(timeout=15) == 1
    (failed,) = sidecar.events("sidecar_failed")
    assert str(tmp_path / "token") in failed["error"]
    assert "Traceback" not in sidecar.log_path.read_text(encoding="utf-8")
    assert not kernel_nexthops(lab, "leaf1", ANYCAST_V4)


def test_history_shows_a_flap_with_its_reasons(lab: Lab, running: Running, tmp_path: Path) -> None:
    """The service dies and comes back: ``status --history`` has the prefix withdrawn
    between two announced states with the reason, the session up and the failed probes,
    as the real sidecar recorded them (ExaBGP's session events, real probes)."""
    service = running.service("srv1")
    sidecar = running.sidecar("srv1")
    sidecar.write_config(with_api(tmp_path))
    sidecar.stop()
    sidecar.start()
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    service.kill()
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=15,
        message="leaf1 kept srv1 after its service died",
    )

    def failed_probes() -> int:
        code, output = cli(lab, tmp_path, "status", "--history", "--json")
        assert code == 0, output
        return sum(SidecarHistory.model_validate_json(output).services[0].probes.failures)

    # The listener's closing withdraws at once; the probes that fail meanwhile are counted.
    wait_until(lambda: failed_probes() >= 2, timeout=10, message="no failed probe recorded")
    service.start()
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="not back after the flap")

    code, output = cli(lab, tmp_path, "status", "--history", "--json")
    assert code == 0, output
    history = SidecarHistory.model_validate_json(output)
    (prefix,) = history.prefixes
    assert [c.state for c in prefix.changes][-3:] == ["announced", "withdrawn", "announced"]
    assert (
        prefix.changes[-2].reason
        == f"service web down (listener closed: 10.255.0.1:{SERVICE_PORT})"
    )
    peers = {peer.name: peer for peer in history.peers}
    assert peers["10.0.1.1"].changes[-1].state == "up"
    (web,) = history.services
    assert [c.state for c in web.changes][-2:] == ["down", "up"]
    assert sum(web.probes.failures) >= 2
    code, output = cli(lab, tmp_path, "status", "--history")
    assert code == 0, output
    assert f"service web down (listener closed: 10.255.0.1:{SERVICE_PORT})" in output
