"""The driver resynchronises when ExaBGP's answers stop pairing with its commands.

A command that reaches ExaBGP as two lines (before the config's ASCII full-match
validation, a community ending in a newline did that) gets two answers; every later
answer would then be paired with the wrong command. The driver must notice the answer
nothing was waiting for, restart ExaBGP (the session resets, so nothing smuggled
survives) and send its routes again, instead of drifting.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.exabgp.resync_probe import SMUGGLED
from tests.integration.sidecars import ANYCAST_V4, kernel_nexthops, sidecar_config
from tests.lablib import wait_until

pytestmark = pytest.mark.integration


def test_an_unexpected_answer_restarts_exabgp_and_nothing_smuggled_survives(lab: Lab) -> None:
    config = sidecar_config("srv1", 10_000)
    config["bgp"]["peers"] = config["bgp"]["peers"][:1]
    config["hold"] = 10
    argv = [sys.executable, "-m", "tests.integration.exabgp.resync_probe", json.dumps(config)]
    probe = lab.popen("srv1", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert probe.stdout is not None
        while lines.count("synced") < 2:
            line = probe.stdout.readline()
            assert line, "the probe ended early:\n" + "\n".join(lines[-40:])
            lines.append(line.strip())
        # Resynchronised: the good route is on the leaf again, the smuggled one is not.
        wait_until(
            lambda: kernel_nexthops(lab, "leaf1", ANYCAST_V4),
            timeout=15,
            message="the good route did not come back after the restart",
        )
        assert not kernel_nexthops(lab, "leaf1", SMUGGLED)
    finally:
        probe.kill()
        probe.wait()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    lost = [e for e in events if e["event"] == "exabgp_lost"]
    assert any("out of step with exabgp" in e["reason"] for e in lost), lost
    assert len([e for e in events if e["event"] == "exabgp_started"]) >= 2
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=15,
        message="the probe's route outlived it",
    )
