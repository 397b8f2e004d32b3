"""Any broken file on SIGHUP is a rejected reload: the real sidecar keeps running and
announcing, and its status never shows a secret.

Each of these files once escaped the reload as something other than ConfigError
(ValueError, TypeError, RecursionError) or stalled it (an alias bomb); the supervisor then
withdrew everything and exited. The test reloads them one after the other into one
running sidecar and watches leaf1.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import ANYCAST_V4, Running, Sidecar, announced_via, sidecar_config
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
SECRET = "zq9-Geheim-Passwort"  # noqa: S105  # a test value that must never be shown


def valid_config() -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["prefixes"] = [p for p in config["prefixes"] if p["prefix"] == ANYCAST_V4]
    config["http"] = {"listen": "127.0.0.1:9179"}
    return config


def bomb(levels: int = 9) -> str:
    lines = ["anchors:", "  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def broken_files() -> dict[str, str]:
    text = json.dumps(valid_config(), indent=1)
    secret_peer = valid_config()
    secret_peer["bgp"]["peers"][0]["md5_password"] = SECRET + " with a blank"
    return {
        "int-tag": text.replace('"local_as": 65001', '"local_as": !!int sixty-five'),
        "timestamp": text + "\nx: !!timestamp 2024-13-45\n",
        "unhashable-key": text.rstrip().removesuffix("}") + ', ? {"a": 1}: 2}\n',
        "deep-nesting": text + "\nx: " + "[" * 5000 + "]" * 5000 + "\n",
        "recursive-alias": text + "\nx: &me [1, *me]\n",
        "huge-integer": text + "\nx: " + "9" * 5000 + "\n",
        "alias-bomb": bomb() + text.replace('"hold_time": 3', '"hold_time": *a8'),
        "secret-md5": json.dumps(secret_peer),
    }


def status(lab: Lab) -> dict[str, Any]:
    code = (
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://127.0.0.1:9179/status', timeout=10).read().decode())"
    )
    result = lab.run("srv1", [sys.executable, "-c", code])
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_every_broken_file_is_a_rejected_reload(lab: Lab, running: Running) -> None:
    running.service("srv1")
    sidecar = Sidecar(lab, "srv1", valid_config(), running.workdir)
    running.sidecars.append(sidecar)
    sidecar.start()
    wait_until(lambda: announced_via(lab, SRV1), timeout=30, message="never announced")
    for index, (name, text) in enumerate(broken_files().items(), start=1):
        sidecar.config_path.write_text(text, encoding="utf-8")
        sidecar.signal(signal.SIGHUP)
        wait_until(
            lambda: len(sidecar.events("reload_rejected")) >= index,  # noqa: B023  # now
            timeout=15,
            message=f"reload of {name} was not rejected:\n{sidecar.log_tail()}",
        )
        assert sidecar.process is not None
        assert sidecar.process.poll() is None, f"{name} killed the sidecar:\n{sidecar.log_tail()}"
        assert announced_via(lab, SRV1), f"{name} withdrew the route"
        error = status(lab)["last_reload_error"]
        assert error, name
        assert "Traceback" not in error
        assert SECRET not in error, "a rejected md5_password appeared on /status"
    rejected = sidecar.events("reload_rejected")
    assert len(rejected) == len(broken_files())
    assert SECRET not in sidecar.log_path.read_text(encoding="utf-8")

    sidecar.write_config(valid_config())
    sidecar.signal(signal.SIGHUP)
    wait_until(lambda: status(lab)["last_reload_error"] is None, timeout=15, message="no recovery")
    assert announced_via(lab, SRV1)
