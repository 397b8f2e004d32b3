"""The production leaf template of docs/leaf.md, run by FRR, against real sidecars.

``containerlab/leaf-template`` is the single-leaf lab with leaf1 running the template
verbatim (``tests/unit/test_leaf_template.py`` checks that it is the documented text).
Here two sidecars peer with it as dynamic neighbours from the listen ranges, and each
rule of the template is seen working on leaf1:

- FRR accepted every command (a mistyped line would only be logged);
- both servers' sessions come up without a ``neighbor`` line per server;
- link bandwidth becomes kernel next-hop weights (10G vs 1G);
- a prefix outside the anycast range is refused by the inbound policy;
- BFD comes up with both servers from the peer-group's profile (sidecars with hold 9 s);
- GRACEFUL_SHUTDOWN gives the path local-pref 0 and takes it out of the FIB, while the
  route is still announced;
- the host part, ``leaf1/antispoof.nft``: a server cannot send with another server's
  underlay address, while its own and the anycast addresses pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    Running,
    Sidecar,
    announced_via,
    bgp_paths,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import REPO_ROOT, deployed, require_lab_host, wait_until

pytestmark = pytest.mark.integration

TOPOLOGY = REPO_ROOT / "containerlab" / "leaf-template" / "leaf-template.clab.yml"
TEMPLATE = REPO_ROOT / "containerlab" / "leaf-template" / "leaf1" / "frr.conf"
SRV1, SRV2 = "10.0.1.2", "10.0.2.2"
OUTSIDE = "10.254.0.1/32"  # not in ANYCAST-V4
CLIENT_V4, CLIENT_V6 = "10.0.9.2", "fd00:9::2"
BFD_DEFAULTS = {"transmit-interval 300", "receive-interval 300", "detect-multiplier 3"}
SERVER_SESSIONS = {SRV1, SRV2, "fd00:1::2", "fd00:2::2"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_host()
    with deployed(TOPOLOGY) as deployed_lab:
        yield deployed_lab


@pytest.fixture
def running(lab: Lab, tmp_path: Path) -> Iterator[Running]:
    state = Running(lab, tmp_path)
    try:
        yield state
    finally:
        state.close()


def template_commands() -> list[str]:
    """The template's command lines, comments and the version banner left out."""
    skip = ("!", "frr version", "frr defaults", "exit")
    return [
        line.strip()
        for line in TEMPLATE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith(skip)
    ]


def with_bfd(config: dict[str, Any]) -> dict[str, Any]:
    """Production-like timers: BFD on every peer, hold 9 s as the template's leaf."""
    config["bgp"]["hold_time"] = 9
    for peer in config["bgp"]["peers"]:
        peer["bfd"] = True
    return config


def bfd_peers_up(lab: Lab) -> dict[str, dict[str, Any]] | None:
    peers = {p["peer"]: p for p in lab.vtysh_json("leaf1", "show bfd peers json")}
    up = {address: peer for address, peer in peers.items() if peer.get("status") == "up"}
    return up if set(up) >= SERVER_SESSIONS else None


def established(lab: Lab) -> set[str]:
    summary = lab.vtysh_json("leaf1", "show bgp summary json")
    peers: set[str] = set()
    for family in ("ipv4Unicast", "ipv6Unicast"):
        for address, peer in (summary.get(family) or {}).get("peers", {}).items():
            if peer.get("state") == "Established":
                peers.add(address)
    return peers


def test_frr_accepts_every_line_of_the_template(lab: Lab) -> None:
    """Every command of the template is in leaf1's running config, as FRR writes it."""
    running_config = lab.run("leaf1", ["vtysh", "-N", lab.ns("leaf1"), "-c", "show running-config"])
    shown = {line.strip() for line in running_config.stdout.splitlines()}
    # FRR writes the GSHUT community by its number and adds defaults it prints itself;
    # bfdd leaves out the profile's values, which are its defaults (their effect is
    # checked in ``show bfd peers`` below).
    missing = [
        command
        for command in template_commands()
        if command not in shown
        and command.replace("graceful-shutdown", "65535:0") not in shown
        and command not in BFD_DEFAULTS
    ]
    assert not missing, f"FRR did not take these lines:\n{missing}\n{running_config.stdout}"


def test_servers_weights_policy_and_graceful_shutdown(
    lab: Lab, running: Running, tmp_path: Path
) -> None:
    """Dynamic sessions, UCMP weights, the prefix filter and GSHUT, on one pair of servers."""
    running.service("srv1")
    running.service("srv2")
    # srv1 also has an address outside the anycast range and tries to announce it.
    lab.run("srv1", ["ip", "addr", "replace", OUTSIDE, "dev", "lo"], check=True)
    drain_file = tmp_path / "DRAIN"
    config = sidecar_config("srv1", 10_000)
    config["prefixes"].append({"prefix": OUTSIDE, "services": ["web"], "bandwidth_mbps": 10_000})
    config["drain"] = {"drain_file": str(drain_file), "graceful_shutdown_hold": 60}
    srv1 = Sidecar(lab, "srv1", with_bfd(config), tmp_path)
    srv2 = Sidecar(lab, "srv2", with_bfd(sidecar_config("srv2", 1_000)), tmp_path)
    for sidecar in (srv1, srv2):
        running.sidecars.append(sidecar)
        sidecar.start()

    wait_until(
        lambda: established(lab) >= SERVER_SESSIONS,
        timeout=20,
        message="leaf1 should establish both servers' sessions from its listen ranges",
    )
    # Dynamic neighbours inherit the peer-group's BFD profile (300 ms x 3).
    bfd = wait_until(
        lambda: bfd_peers_up(lab),
        timeout=10,
        message="leaf1's BFD sessions with both servers (IPv4 and IPv6) should be up",
    )
    for address, peer in bfd.items():
        timers = (peer["transmit-interval"], peer["receive-interval"], peer["detect-multiplier"])
        assert timers == (300, 300, 3), (address, peer)
        assert peer["remote-transmit-interval"] == 300, (address, peer)
        assert peer["remote-detect-multiplier"] == 3, (address, peer)
    hold = lab.vtysh_json("leaf1", f"show bgp neighbor {SRV1} json")[SRV1]
    assert hold["bgpTimerHoldTimeMsecs"] == 9000

    def both_servers() -> dict[str, int] | None:
        hops = kernel_nexthops(lab, "leaf1", ANYCAST_V4)
        return hops if len(hops) == 2 else None

    weights = wait_until(
        both_servers,
        timeout=15,
        message="leaf1 should route the anycast prefix via both servers",
    )
    assert weights[SRV1] > 5 * weights[SRV2], f"10G vs 1G should weigh about 10:1: {weights}"

    # The route outside the anycast range was sent (ExaBGP acknowledged it to leaf1's
    # session) but refused by SERVERS-IN-V4.
    wait_until(
        lambda: any(e.get("prefix") == OUTSIDE for e in srv1.events("route_announced")),
        timeout=10,
        message=f"srv1 should have announced {OUTSIDE}",
    )
    assert bgp_paths(lab, "leaf1", OUTSIDE) == []
    assert kernel_nexthops(lab, "leaf1", OUTSIDE) == {}

    # Drain srv1 through its drain file: GSHUT first, withdrawal only after 60 s.
    drain_file.touch()

    def graceful() -> dict[str, Any] | None:
        for path in bgp_paths(lab, "leaf1", ANYCAST_V4):
            # FRR shows 65535:0 by name ("gracefulShutdown" in the JSON list).
            communities = path.get("community", {}).get("list", [])
            if path["nexthops"][0]["ip"] == SRV1 and "gracefulShutdown" in communities:
                return path
        return None

    path = wait_until(graceful, timeout=15, message="srv1's path never carried 65535:0")
    assert path.get("locPrf") == 0
    wait_until(
        lambda: announced_via(lab, SRV2),
        timeout=10,
        message="leaf1 should stop using srv1 once it carries GRACEFUL_SHUTDOWN",
    )


def nft_counter(lab: Lab, node: str, table: str, name: str) -> int:
    listed = lab.run(node, ["nft", "-j", "list", "counter", "inet", table, name]).stdout
    return int(
        next(o["counter"]["packets"] for o in json.loads(listed)["nftables"] if "counter" in o)
    )


def send(lab: Lab, node: str, source: str, target: str) -> None:
    """Three UDP datagrams from ``source`` (an address of the node) to ``target``'s port 9."""
    family = "AF_INET6" if ":" in source else "AF_INET"
    script = (
        f"import socket; s = socket.socket(socket.{family}, socket.SOCK_DGRAM);"
        f" s.bind(({source!r}, 0)); [s.sendto(b'x', ({target!r}, 9)) for _ in range(3)]"
    )
    lab.run(node, ["python3", "-c", script])


SENDERS = {
    # source address -> node that sends from it
    "forged": {SRV2: "srv1", "fd00:2::2": "srv1"},
    "own": {SRV2: "srv2", "fd00:2::2": "srv2", SRV1: "srv1", "fd00:1::2": "srv1"},
}


def test_leaf_drops_a_server_sending_with_another_servers_underlay_address(lab: Lab) -> None:
    """srv1 sends with srv2's addresses: leaf1 drops and counts it, the client sees none;
    each server's own addresses and srv1's anycast address pass."""
    anycast = ANYCAST_V4.split("/")[0]
    sources = [SRV2, "fd00:2::2", SRV1, "fd00:1::2", anycast]
    # srv1 holds srv2's addresses on lo for a moment, so its kernel sends from them.
    addresses = [["ip", "addr", "{}", f"{SRV2}/32", "dev", "lo"]]
    addresses.append(["ip", "-6", "addr", "{}", "fd00:2::2/128", "dev", "lo"])
    # The client counts what reaches it, per source.
    rules = "".join(
        f"  {'ip6' if ':' in source else 'ip'} saddr {source} udp dport 9 counter\n"
        for source in sources
    )
    hook = "type filter hook prerouting priority raw;"
    seen = f"table inet seen {{\n chain in {{\n  {hook}\n{rules} }}\n}}\n"

    def client_counts() -> list[int]:
        listed = lab.run("client", ["nft", "-j", "list", "chain", "inet", "seen", "in"]).stdout
        return [
            e["counter"]["packets"]
            for o in json.loads(listed)["nftables"]
            if "rule" in o
            for e in o["rule"]["expr"]
            if "counter" in e
        ]

    try:
        lab.run("client", ["nft", "-f", "-"], input=seen)
        for argv in addresses:
            lab.run("srv1", [arg.format("add") for arg in argv] + ["nodad"] * ("-6" in argv))
        before = nft_counter(lab, "leaf1", "leaf-antispoof", "spoofed")
        for source, node in SENDERS["forged"].items():
            send(lab, node, source, CLIENT_V6 if ":" in source else CLIENT_V4)
        wait_until(
            lambda: nft_counter(lab, "leaf1", "leaf-antispoof", "spoofed") - before >= 6 or None,
            timeout=5,
            message="leaf1 should count 3 forged datagrams per family",
        )
        for argv in addresses:
            lab.run("srv1", [arg.format("del") for arg in argv])

        for source, node in SENDERS["own"].items():
            send(lab, node, source, CLIENT_V6 if ":" in source else CLIENT_V4)
        # Answers to clients come from the anycast address; they pass although leaf1
        # has no route back to it here (no sidecar runs).
        send(lab, "srv1", anycast, CLIENT_V4)
        # srv2's own datagrams got through, none of srv1's forged ones did.
        wait_until(
            lambda: client_counts() == [3, 3, 3, 3, 3] or None,
            timeout=5,
            message="the client should see 3 datagrams per legitimate source, no forged one",
        )
        assert nft_counter(lab, "leaf1", "leaf-antispoof", "spoofed") - before == 6
    finally:
        for argv in addresses:
            lab.run("srv1", [arg.format("del") for arg in argv], check=False)
        lab.run("client", ["nft", "delete", "table", "inet", "seen"], check=False)
