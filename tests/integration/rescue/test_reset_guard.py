"""The reset guard on a real kernel: tc (cls_bpf, clsact egress) and the table's mark.

Two namespaces joined by a veth: ``srv`` holds the anycast addresses on lo, the client
connects to a port nobody listens on, so the server's stack answers with a reset. With
the guard on the server's veth and no rescue table, that reset is dropped (the client
times out); with the rendered table loaded, its ``resets`` chain marks the reset and it
leaves (connection refused); ``nft flush ruleset`` drops them again, since the guard is
not nftables.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from anycast_announcer.rescue.guard import DEFAULT_MARK, GUARD_PREFERENCE, bytecode, guard_program
from anycast_announcer.rescue.model import RescuePlan
from anycast_announcer.rescue.render import render_table
from tests.integration.rescue.rescuelab import require_rescue_host
from tests.lablib import unique_lab_name
from tests.unit.rescue.plans import plan

pytestmark = pytest.mark.integration

TARGETS = {4: "10.255.0.1", 6: "fd00:255::1"}
PROBE = """
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(1.0)
try:
    s.connect((sys.argv[1], 9))
except ConnectionRefusedError:
    print("reset")
except TimeoutError:
    print("timeout")
"""


def _run(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """(server, client) namespaces, deleted afterwards."""
    require_rescue_host()
    srv, cli = unique_lab_name("rgs"), unique_lab_name("rgc")
    for name in (srv, cli):
        _run("ip", "netns", "add", name)
    try:
        setup = [
            (srv, "link add anycast-rsc type veth peer name anycast-fb"),
            (srv, "link add gs0 type veth peer name gc0"),
            (srv, f"link set gc0 netns {cli}"),
            (srv, "addr add 10.255.0.1/32 dev lo"),
            (srv, "addr add fd00:255::1/128 dev lo"),
            (srv, "addr add 10.77.0.1/24 dev gs0"),
            (srv, "addr add fd00:77::1/64 dev gs0 nodad"),
            (cli, "addr add 10.77.0.2/24 dev gc0"),
            (cli, "addr add fd00:77::2/64 dev gc0 nodad"),
            (srv, "link set lo up"),
            (srv, "link set gs0 up"),
            (cli, "link set gc0 up"),
            (cli, "route add 10.255.0.1/32 via 10.77.0.1"),
            (cli, "-6 route add fd00:255::1/128 via fd00:77::1"),
        ]
        for ns, command in setup:
            _run("ip", "-n", ns, *command.split())
        yield srv, cli
    finally:
        for name in (srv, cli):
            subprocess.run(["ip", "netns", "delete", name], check=False)


def _probe(cli: str, family: int) -> str:
    return _run("ip", "netns", "exec", cli, "python3", "-c", PROBE, TARGETS[family]).strip()


def _load(srv: str, p: RescuePlan) -> None:
    for family in p.families:
        _run("ip", "netns", "exec", srv, "nft", "-f", "-", stdin=render_table(p, family).text)


@pytest.mark.parametrize("family", [4, 6])
def test_resets_leave_only_while_the_table_marks_them(pair: tuple[str, str], family: int) -> None:
    srv, cli = pair
    p = plan()
    assert _probe(cli, family) == "reset"  # the control: no guard, the stack resets
    program = bytecode(guard_program(p.prefixes, DEFAULT_MARK))
    tc = ["ip", "netns", "exec", srv, "tc"]
    _run(*tc, "qdisc", "add", "dev", "gs0", "clsact")
    where = ["dev", "gs0", "egress", "pref", str(GUARD_PREFERENCE), "handle", "1"]
    _run(*tc, "filter", "add", *where, "protocol", "all", "bpf", "da", "bytecode", program)
    assert _probe(cli, family) == "timeout"  # no table: the reset is dropped
    _load(srv, p)
    assert _probe(cli, family) == "reset"  # marked by the table's resets chain
    _run("ip", "netns", "exec", srv, "nft", "flush", "ruleset")
    assert _probe(cli, family) == "timeout"
