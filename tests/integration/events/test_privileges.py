"""No privilege is needed to watch: the destroy and address groups accept any subscriber.

The watchers run as user nobody without any capability (the agent process the
benchmark uses) and still report a killed listener and a removed address.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from anycast_announcer.netlab import Lab
from tests.benchmarks.events import ANYCAST, PORT, Agent
from tests.integration.events.support import TcpProcesses
from tests.unprivileged import AS_NOBODY, public_install

pytestmark = pytest.mark.integration


def test_watchers_need_no_privilege(events_lab: Lab, tcp: TcpProcesses) -> None:
    """As nobody with no capabilities: ListenerGone after SIGKILL, AddressEvent after
    ip addr del (sock_diag and rtnetlink both allow unprivileged multicast receivers)."""
    service = tcp.serve(ANYCAST, PORT)
    public = Path(tempfile.mkdtemp(prefix="anycast-events-"))
    install = public_install(public)
    agent = Agent(
        events_lab,
        wrapper=AS_NOBODY,
        python=install.python,
        env=install.env,
        cwd=public,
    )
    try:
        uid = next(
            line.split()[1]
            for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert uid == "65534"
        tcp.kill(service)
        assert agent.next("listener_gone")["target"] == f"{ANYCAST}:{PORT}"
        events_lab.run("srv", ["ip", "addr", "del", f"{ANYCAST}/32", "dev", "lo"])
        event = agent.next("address")
        assert (event["address"], event["present"]) == (ANYCAST, False)
    finally:
        events_lab.run("srv", ["ip", "addr", "replace", f"{ANYCAST}/32", "dev", "lo"])
        agent.close()
        shutil.rmtree(public, ignore_errors=True)
