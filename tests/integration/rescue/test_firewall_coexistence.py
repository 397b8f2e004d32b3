"""Host firewalls other than ``nft flush ruleset`` against the rescue tables, for real.

iptables-nft keeps its rules in nftables tables of its own (``ip filter``, ``ip nat``,
``ip6 filter``...). Its flush (``-F``, ``-X``) and its restore (``iptables-nft-restore``,
which replaces each table its input names, and is what ufw's reload runs) must leave the
rescue tables exactly as they were: same rules, same handles, same learnt flows. Run in
a throwaway namespace with the two overlay devices (``dup`` needs them).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from anycast_announcer.rescue.model import Family
from anycast_announcer.rescue.render import render_table
from tests.integration.rescue.rescuelab import require_rescue_host
from tests.lablib import unique_lab_name
from tests.prerequisites import require_command
from tests.unit.rescue.plans import plan

pytestmark = pytest.mark.integration

LEARNT = "{ 10.3.0.2 . 40000 . 10.255.0.1 . 8080 }"
RULESET = """\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp --dport 22 -j ACCEPT
-A INPUT -p udp --dport 4800 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -j MARK --set-mark 0x1
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p udp --dport 53 -j NOTRACK
COMMIT
"""
RULESET6 = """\
*filter
:INPUT DROP [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
COMMIT
"""


def _in(namespace: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace with the overlay devices and both rescue tables, one flow learnt."""
    require_rescue_host()
    require_command("iptables-nft", "run `make test-deps`")
    name = unique_lab_name("rxfw")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        _in(name, "ip", "link", "add", "anycast-rsc", "type", "veth", "peer", "name", "anycast-fb")
        p = plan()
        for family in p.families:
            _in(name, "nft", "-f", "-", stdin=render_table(p, family).text)
        _in(name, "nft", "add", "element", "ip", "anycast_rescue", "owner_10_2_2_2", LEARNT)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def _ours(namespace: str) -> list[object]:
    """Both rescue tables as nft reports them (rules with their handles, elements)."""
    return [
        json.loads(_in(namespace, "nft", "-j", "list", "table", family.value, "anycast_rescue"))
        for family in Family
    ]


def _tables(namespace: str) -> set[str]:
    return set(_in(namespace, "nft", "list", "tables").splitlines())


def test_iptables_nft_flush_and_restore_leave_the_rescue_tables_alone(namespace: str) -> None:
    before = _ours(namespace)
    _in(namespace, "iptables-nft-restore", stdin=RULESET)
    _in(namespace, "ip6tables-nft-restore", stdin=RULESET6)
    # The firewall really is there, in nftables tables of its own.
    assert {"table ip filter", "table ip nat", "table ip6 filter"} <= _tables(namespace)
    assert "MASQUERADE" in _in(namespace, "iptables-nft-save")
    for table in ("filter", "nat", "mangle", "raw"):
        _in(namespace, "iptables-nft", "-t", table, "-F")
        _in(namespace, "iptables-nft", "-t", table, "-X")
    _in(namespace, "ip6tables-nft", "-F")
    _in(namespace, "iptables-nft-restore", stdin=RULESET)  # a reload: replace, not append
    assert _in(namespace, "iptables-nft-save").count("MASQUERADE") == 1
    assert _ours(namespace) == before
    assert LEARNT.strip("{} ").split(" . ")[0] in json.dumps(before[0])


def test_the_check_can_fail(namespace: str) -> None:
    """nft's own flush does delete them, so the comparison above can tell."""
    before = _ours(namespace)
    _in(namespace, "nft", "flush", "ruleset")
    with pytest.raises(subprocess.CalledProcessError):
        assert _ours(namespace) == before
