"""Real ExaBGP reads what render.py writes: a run_dir with blanks and separators works.

ExaBGP is started exactly as the driver starts it (rendered config, rendered environment,
an empty env file) in a directory whose name holds a blank, '#', ';' and braces, and the
test checks that ExaBGP ran our API relay with that path as one argument: the relay
connects to the socket inside the directory. Before the ``run`` line was quoted, ExaBGP
split the path at the blank and refused to start.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from anycast_announcer.config import BgpConfig
from anycast_announcer.exabgp.render import render_config, render_environment

pytestmark = pytest.mark.integration

EXABGP = Path(sys.executable).with_name("exabgp")


@pytest.fixture
def awkward_dir() -> Iterator[Path]:
    """A private directory whose name ExaBGP could misread; short enough for sun_path."""
    with tempfile.TemporaryDirectory(prefix="aa ") as parent:
        path = Path(parent) / "run dir #1;{x}"
        path.mkdir(mode=0o700)
        yield path


def start_exabgp(run_dir: Path, api_argv: list[str]) -> subprocess.Popen[bytes]:
    bgp = BgpConfig.model_validate(
        {
            "local_as": 65001,
            "router_id": "10.0.0.1",
            # Nothing listens there: ExaBGP keeps retrying, which is all this test needs.
            "peers": [{"address": "127.0.0.1", "peer_as": 65002, "md5_password": "a#b;c{d}"}],
        }
    )
    conf = run_dir / "exabgp.conf"
    conf.write_text(render_config(bgp, api_argv), encoding="utf-8")
    env_file = run_dir / "exabgp.env"
    env_file.write_text("", encoding="utf-8")
    user = pwd.getpwuid(os.getuid()).pw_name
    env = {**os.environ, **render_environment(user), "EXABGP_ENVFILE": str(env_file)}
    with (run_dir / "exabgp.log").open("wb") as log:
        return subprocess.Popen(
            [str(EXABGP), "server", str(conf)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_exabgp_runs_the_relay_from_a_directory_with_blanks(awkward_dir: Path) -> None:
    if not EXABGP.exists():
        pytest.fail(f"exabgp is not installed beside {sys.executable}")
    sock_path = awkward_dir / "api.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(sock_path))
        server.listen(1)
        server.settimeout(30)
        relay = [sys.executable, "-m", "anycast_announcer.exabgp.bridge", str(sock_path)]
        process = start_exabgp(awkward_dir, relay)
        try:
            try:
                connection, _ = server.accept()
            except TimeoutError:
                output = (awkward_dir / "exabgp.log").read_text(errors="replace")
                raise AssertionError(f"the relay never connected; ExaBGP said:\n{output}") from None
            # The relay exits and stops ExaBGP: with the sidecar gone, nobody vouches.
            connection.close()
            assert process.wait(timeout=30) is not None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
