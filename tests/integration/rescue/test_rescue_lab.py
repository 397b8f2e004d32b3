"""Flow rescue on real kernels: real TCP sessions through real ECMP, in namespaces.

Every test starts from the same state (all three servers routed to and reachable, full
MTU, rescue installed on every server with the shared config) and changes one thing.
The control tests remove rescue and show the same change breaking sessions, so the
rescued runs are not passing by accident.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.rescue.rescuelab import (
    MEMBERS,
    SERVERS,
    RescueLab,
    peer_total,
    rescue_lab,
    total,
    write_config,
)
from tests.lablib import REPO_ROOT, wait_until

pytestmark = pytest.mark.integration

SESSIONS = 120
WATCH = [sys.executable, "-m", "anycast_announcer", "rescue", "install", "--watch"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RescueLab]:
    """The lab, deployed once for this module."""
    workdir = tmp_path_factory.mktemp("rescue")
    workdir.chmod(0o755)
    with rescue_lab(workdir) as lab:
        yield lab


@pytest.fixture
def lab(shared: RescueLab) -> RescueLab:
    """The lab, back in its initial state."""
    shared.reset()
    return shared


@pytest.mark.parametrize("family", [4, 6])
def test_a_withdrawn_server_keeps_every_session(lab: RescueLab, family: int) -> None:
    """s3's route goes away while s3 lives: its sessions come back to it over the
    overlay, and the sessions the rehash moved between s1 and s2 survive too."""
    before = lab.counters()
    summary = lab.hold(family, SESSIONS, lambda: lab.set_paths(["s1", "s2"]))
    after = lab.counters()
    assert summary["total"] == SESSIONS
    assert summary["started_on"].get("s3", 0) > 0
    assert summary["broken"] == 0, summary["broken_by_reason"]
    s3_received = sum(p["received"]["packets"] for p in after["s3"]["peers"]) - sum(
        p["received"]["packets"] for p in before["s3"]["peers"]
    )
    assert s3_received > 0


def test_without_rescue_a_withdrawal_breaks_sessions(lab: RescueLab) -> None:
    """The control: the same change, rescue removed."""
    lab.remove_all()
    summary = lab.hold(4, SESSIONS, lambda: lab.set_paths(["s1", "s2"]))
    on_s3 = summary["started_on"].get("s3", 0)
    assert on_s3 > 0
    assert summary["broken_by_server"].get("s3", 0) == on_s3
    assert "reset" in summary["broken_by_reason"]


def test_an_added_server_breaks_no_session(lab: RescueLab) -> None:
    """s3 is added to ECMP: flows it receives of s1's and s2's are handed back."""
    lab.set_paths(["s1", "s2"])
    before = lab.counters()
    summary = lab.hold(4, SESSIONS, lambda: lab.set_paths(SERVERS))
    after = lab.counters()
    assert summary["started_on"].get("s3", 0) == 0
    assert summary["broken"] == 0, summary["broken_by_reason"]
    forwarded = sum(p["forwarded"]["packets"] for p in after["s3"]["peers"]) - sum(
        p["forwarded"]["packets"] for p in before["s3"]["peers"]
    )
    assert forwarded > 0


def test_learning_cuts_copies_to_about_one_per_rescued_packet(lab: RescueLab) -> None:
    """Without learning every rescued packet would be copied to both peers (2.0)."""
    before = lab.counters()
    summary = lab.hold(4, SESSIONS, lambda: lab.set_paths(["s1", "s2"]), settle=6)
    after = lab.counters()
    assert summary["broken"] == 0
    copies = peer_total(after, "forwarded") - peer_total(before, "forwarded")
    rescued = peer_total(after, "received") - peer_total(before, "received")
    learnt = peer_total(after, "forwarded_learnt") - peer_total(before, "forwarded_learnt")
    replicated = total(after, "replicated") - total(before, "replicated")
    assert rescued > 0
    assert learnt > replicated
    assert copies / rescued < 1.5, (copies, rescued)


@pytest.mark.parametrize(("event", "family"), [("withdrawal", 4), ("addition", 6)])
def test_a_moved_flow_goes_to_its_directory_member_not_to_every_member(
    lab: RescueLab, event: str, family: int
) -> None:
    """Owners registered their sessions with each flow's directory member when they
    opened; after the set change, the packets of a moved flow go to that one member
    (which sends them on to the owner), never to every member, and the owner's feedback
    reaches the server that asked. Counted from just before the change."""
    if event == "addition":
        lab.set_paths(["s1", "s2"])
    start = lab.counters()
    before: dict[str, dict[str, Any]] = {}

    def change() -> None:
        before.update(lab.counters())
        lab.set_paths(["s1", "s2"] if event == "withdrawal" else SERVERS)

    summary = lab.hold(family, SESSIONS, change, settle=5)
    after = lab.counters()

    def delta(name: str) -> int:
        return total(after, name) - total(before, name)

    rescued = peer_total(after, "received") - peer_total(before, "received")
    figures: dict[str, float] = {
        name: delta(name)
        for name in (
            "dir_queries",
            "dir_forwarded",
            "dir_unknown",
            "dir_limited",
            "dir_registered",
            "dir_recorded",
            "replicated",
            "underlay_sent",
        )
    }
    figures["rescued"] = rescued
    learnt = peer_total(after, "forwarded_learnt") - peer_total(before, "forwarded_learnt")
    figures["learnt_forwards"] = learnt
    figures["underlay_per_rescued"] = round(figures["underlay_sent"] / max(1, rescued), 3)
    # What opening the sessions cost: registrations (each a copy of one packet).
    registered = total(before, "dir_registered") - total(start, "dir_registered")
    registered_bytes = sum(
        int(before[node]["dir_registered"]["bytes"]) - int(start[node]["dir_registered"]["bytes"])
        for node in before
    )
    figures["registrations_per_session"] = round(registered / SESSIONS, 3)
    figures["inner_bytes_per_registration"] = round(registered_bytes / max(1, registered), 1)
    name = f"directory-{event}-ipv{family}"
    (lab.workdir / f"{name}.json").write_text(json.dumps(figures), encoding="utf-8")
    print(f"{name}: {figures}")
    assert summary["broken"] == 0, summary["broken_by_reason"]
    assert rescued > 0
    # Targeted: every moved flow's first copy went to its directory member, none to all.
    assert figures["dir_queries"] + figures["dir_forwarded"] > 0, figures
    assert figures["replicated"] == 0, figures
    assert figures["dir_unknown"] == 0, figures
    # The owner's feedback reached the asker (the forwarded copy bore its MAC): learnt.
    assert figures["learnt_forwards"] > 0, figures
    assert figures["underlay_per_rescued"] <= 2.0, figures
    # At most one registration per session in a window shorter than register_interval;
    # none for the flows of the owner's own buckets (about a third here).
    assert 0 < figures["registrations_per_session"] <= 1.0, figures


def test_a_moved_bucket_is_registered_with_its_new_directory_member_at_once(
    lab: RescueLab, tmp_path: Path
) -> None:
    """s3 leaves the group on s1 and s2 (both at once), while sessions on s1 and s2 send
    every half second: the buckets s3 answered for move to s1 and s2, and the owners'
    ``registered`` (which held the flows registered with s3) is emptied by the same
    table update, so the flows of buckets that moved to the *other* server register
    with it at their next packet: new entries in s2's ``dir_<s1>`` and s1's
    ``dir_<s2>``. Before, those flows stayed unregistered until register_interval
    (60 s) ran out. (Flows whose bucket did not move register again too, once: their
    entries are refreshed, not added, so they do not count here.)"""
    lab.set_paths(["s1", "s2"])  # s3 holds no session: only s1 and s2 register
    two = write_config(tmp_path / "two.yaml", members=MEMBERS[:2])
    owners = ("s1", "s2")
    window: dict[str, Any] = {}

    def entries() -> int:
        """Flows each of s1 and s2 holds as the other's, as directory member."""
        return lab.set_size("s2", "dir_10_0_1_2") + lab.set_size("s1", "dir_10_0_2_2")

    def recorded() -> int:
        return sum(lab.counter(node, "dir_recorded") for node in owners)

    def leave() -> None:
        window["entries_before"], window["recorded_before"] = entries(), recorded()
        with ThreadPoolExecutor(len(owners)) as pool:
            # At once: a registration sent to a member still on the old bucket map is
            # not recorded there (docs/rescue.md, *The flow directory*).
            outputs = list(pool.map(lambda node: lab.install(node, two), owners))
        assert all(out.startswith("rescue: installed") for out in outputs), outputs
        installed = time.monotonic()
        while (after := entries()) == window["entries_before"] and time.monotonic() < installed + 3:
            time.sleep(0.1)
        window["seconds"] = round(time.monotonic() - installed, 2)
        window["entries_after"], window["recorded_after"] = after, recorded()

    summary = lab.hold(4, 60, leave, settle=1)
    print(f"moved buckets registered again: {window}")
    assert summary["broken"] == 0, summary["broken_by_reason"]
    assert window["entries_after"] > window["entries_before"], window


def test_a_directory_member_that_takes_the_change_later_still_gets_the_registrations(
    lab: RescueLab, tmp_path: Path
) -> None:
    """s3 leaves the group, but s1 takes the two-member list first (``rescue install
    --watch``, which, as a sidecar, empties ``registered`` once more ``reregister_after``
    later) and s2 about a second later, while sessions on s1 and s2 send every half
    second. The flows of s1 whose bucket moved from s3 to s2 register with s2 at their
    first packet after s1's install, while s2 still counts those buckets as s3's: refused
    (``claims_refused``). The second emptying makes them register again once s2 has the
    new map: new entries in s2's ``dir_<s1>``. Without it (``reregister_after: 0``) they
    stay unregistered until register_interval (60 s) runs out."""
    lab.set_paths(["s1", "s2"])  # s3 holds no session: only s1 and s2 register
    after = 5.0
    two = write_config(
        tmp_path / "two.yaml",
        members=MEMBERS[:2],
        extra=f"  directory: {{reregister_after: {after:g}}}\n",
    )
    window: dict[str, Any] = {}
    watchers: list[subprocess.Popen[str]] = []

    def entries() -> int:
        """Flows s2 holds as s1's, as their directory member."""
        return lab.set_size("s2", "dir_10_0_1_2")

    def s1_first_then_s2() -> None:
        window["entries_before"] = entries()
        refused = lab.counter("s2", "claims_refused")
        watcher = lab.lab.popen(
            "s1",
            [*WATCH, "-c", str(two)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        watchers.append(watcher)
        assert watcher.stdout is not None
        for line in iter(watcher.stdout.readline, ""):
            window.setdefault("s1_said", []).append(line.strip())
            if line.startswith("rescue: watching"):
                break
        switched = time.monotonic()
        time.sleep(1.0)
        assert lab.install("s2", two).startswith("rescue: installed")
        window["s2_later_s"] = round(time.monotonic() - switched, 2)
        window["refused_meanwhile"] = lab.counter("s2", "claims_refused") - refused
        window["entries_s2_switched"] = entries()
        while (grown := entries()) == window["entries_s2_switched"] and (
            time.monotonic() < switched + after + 3
        ):
            time.sleep(0.1)
        window["seconds"] = round(time.monotonic() - switched, 2)
        window["entries_after"] = grown
        time.sleep(1.0)  # every session has sent two packets since
        window["entries_1s_later"] = entries()

    try:
        summary = lab.hold(4, 60, s1_first_then_s2, settle=1)
    finally:
        for watcher in watchers:
            watcher.terminate()
            out, _ = watcher.communicate(timeout=10)
            window["s1_said"] = [*window.get("s1_said", []), *out.splitlines()]
    print(f"late directory member: {window}")
    assert summary["broken"] == 0, summary["broken_by_reason"]
    said = "\n".join(window["s1_said"])
    assert "the bucket map changed: registrations forgotten (ip, ip6)" in said, said
    # The window this is about happened: s1's registrations reached s2 before its switch.
    assert window["refused_meanwhile"] > 0, window
    assert window["entries_after"] > window["entries_s2_switched"], window
    assert "registrations forgotten once more (ip, ip6)" in said, said


def test_an_orphan_is_reset(lab: RescueLab) -> None:
    """s3 dies (link down, route gone): nobody claims its flows, so after probation the
    server that receives them lets its stack reset them; nothing else breaks."""
    before = lab.counters()

    def die() -> None:
        lab.isolate("s3")
        lab.set_paths(["s1", "s2"])

    # A ping may wait 20 s: the sessions must end by a reset, not by the client's patience.
    summary = lab.hold(4, SESSIONS, die, settle=8, timeout=20)
    after = lab.counters()
    on_s3 = summary["started_on"].get("s3", 0)
    assert on_s3 > 0
    assert summary["broken_by_server"] == {"s3": on_s3}
    assert summary["broken_by_reason"] == {"reset": on_s3}
    assert total(after, "orphans") > total(before, "orphans")


@pytest.mark.parametrize("family", [4, 6])
def test_pmtud_completes_through_a_lower_mtu_link(lab: RescueLab, family: int) -> None:
    """q's link to the client drops to 1400: q's ICMP errors reach one server per flow
    hash of the *ICMP* header; relayed, they reach the owners and every download ends."""
    lab.run("q", "ip", "link", "set", "eth1", "mtu", "1400")
    before = lab.counters()
    result = lab.downloads(family, count=30, size=300_000, timeout=8)
    after = lab.counters()
    assert result["hung"] == {}
    assert result["failed"] == 0
    assert sum(result["completed"].values()) == 30
    assert len(result["completed"]) == 3
    assert total(after, "icmp_relayed") > total(before, "icmp_relayed")


def test_without_rescue_pmtud_black_holes_downloads(lab: RescueLab) -> None:
    """The control: the ICMP errors only reach the server they are hashed to."""
    lab.remove_all()
    lab.flush_pmtu()
    lab.run("q", "ip", "link", "set", "eth1", "mtu", "1400")
    result = lab.downloads(4, count=30, size=300_000, timeout=5)
    assert sum(result["hung"].values()) > 0


def test_vxlan_from_a_non_member_is_refused(lab: RescueLab) -> None:
    """x builds the same overlay (VNI, port, a member's MAC) and sends s1 a SYN over it:
    s1 drops it before VXLAN sees it."""
    s1_mac = "02:52:0a:00:01:02"
    for command in (
        "ip link add vx type vxlan id 4242 dstport 4800 local 10.0.9.2 nolearning",
        "ip link set vx address 02:52:0a:00:02:02",  # pretends to be s2
        "ip addr add 169.254.90.66/25 dev vx",
        "ip link set vx up",
        f"bridge fdb append {s1_mac} dev vx dst 10.0.1.2",
        f"ip neigh replace 169.254.90.1 lladdr {s1_mac} dev vx nud permanent",
        "ip route add 10.255.0.1/32 via 169.254.90.1 dev vx",
    ):
        lab.run("x", *command.split())
    # Count only the probe's own packets arriving on s1's overlay device: the device's
    # rx_packets also counts the members' own overlay traffic, which the probe's window
    # sometimes catches (CI saw one such packet).
    for rule in _PROBE_COUNTER:
        lab.run("s1", "nft", *rule.split())
    before = lab.status("s1")["counters"]
    probe = (
        "import socket; s = socket.socket(); s.settimeout(2)\n"
        "try:\n    s.connect(('10.255.0.1', 8080)); print('connected')\n"
        "except OSError as e:\n    print('refused', e)"
    )
    out = lab.run("x", "python3", "-c", probe).stdout
    after = lab.status("s1")["counters"]
    assert out.startswith("refused")
    assert after["underlay_refused"]["packets"] > before["underlay_refused"]["packets"]
    assert _probe_packets_on_overlay(lab) == 0
    lab.run("x", "ip", "link", "del", "vx")
    lab.run("s1", "nft", "delete", "table", "inet", "probe_count")


def test_overlay_packets_not_for_an_anycast_address_are_refused(lab: RescueLab) -> None:
    """A member sends s1 something over the overlay that is not for an anycast address."""
    lab.run("s2", "ip", "route", "add", "192.0.2.1/32", "via", "169.254.90.1", "dev", "anycast-rsc")
    try:
        before = lab.status("s1")["counters"]["overlay_refused"]["packets"]
        send = (
            "import socket; "
            "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 9))"
        )
        lab.run("s2", "python3", "-c", send)
        after = lab.status("s1")["counters"]["overlay_refused"]["packets"]
    finally:
        lab.run("s2", "ip", "route", "del", "192.0.2.1/32")
    assert after > before


def test_reinstall_and_a_config_change_keep_rescued_sessions(
    lab: RescueLab, tmp_path: Path
) -> None:
    """A restarted sidecar reconciles what it finds: the same config changes nothing,
    a changed one is applied in place, and the rescued sessions never notice."""
    changed = write_config(tmp_path / "changed.yaml", extra="  learn_timeout: 7\n")
    outputs: list[str] = []

    def withdraw_then_reconcile() -> None:
        lab.set_paths(["s1", "s2"])
        outputs.extend(lab.install(node) for node in SERVERS)
        outputs.extend(lab.install(node, changed) for node in SERVERS)

    summary = lab.hold(4, SESSIONS, withdraw_then_reconcile)
    assert summary["broken"] == 0, summary["broken_by_reason"]
    assert all(out.startswith("rescue: already installed") for out in outputs[:3])
    assert all(out.startswith("rescue: installed") for out in outputs[3:])
    assert lab.status("s1")["tables"]["ip"]["mode"] == "full"


@pytest.mark.parametrize("family", [4, 6])
def test_take_over_of_sessions_older_than_the_rules(
    lab: RescueLab, tmp_path: Path, family: int
) -> None:
    """Sessions opened with no rescue installed, idle when it is installed (no warm-up):
    their sockets are entered into conntrack, so they are still ours afterwards."""
    lab.remove_all()
    quick = write_config(tmp_path / "quick.yaml", extra="  takeover_warmup: 0\n")
    outputs: list[str] = []

    def install_then_withdraw() -> None:
        outputs.extend(lab.install(node, quick) for node in SERVERS)
        lab.set_paths(["s1", "s2"])

    # A ping may wait 8 s: three installs in a row on a loaded host (all of it CPU on
    # two shared cores) delayed one IPv6 echo past the default 3 s twice, while what this
    # test is after, a session that was not taken over, ends in a reset within probation
    # (3 s) of the withdrawal. Settle longer than that wait, so a hung session still
    # counts as broken before the client stops.
    summary = lab.hold(family, SESSIONS, install_then_withdraw, interval=2.0, settle=10, timeout=8)
    adopted = [
        int(match.group(1))
        for out in outputs
        if (match := re.search(r"(\d+) entered into conntrack", out))
    ]
    assert len(adopted) == 3
    assert sum(adopted) > 0
    assert summary["broken"] == 0, summary["broken_by_reason"]


def test_a_membership_change_is_applied_as_a_diff(lab: RescueLab, tmp_path: Path) -> None:
    """s3 leaves the group on s1: its devices lose s3, s2's counters keep counting."""
    lab.hold(4, 40, lambda: lab.set_paths(["s1", "s2"]), settle=2)
    before = {p["peer"]: p for p in lab.status("s1")["counters"]["peers"]}
    smaller = write_config(tmp_path / "two.yaml", members=["10.0.1.2", "10.0.2.2"])
    lab.install("s1", smaller)
    status = lab.status("s1")
    after = {p["peer"]: p for p in status["counters"]["peers"]}
    assert set(after) == {"10.0.2.2"}
    assert status["devices"]["anycast-rsc"]["peers"] == ["10.0.2.2"]
    for field in ("forwarded_learnt", "received", "feedback_received"):
        assert after["10.0.2.2"][field]["packets"] >= before["10.0.2.2"][field]["packets"]
    assert (
        before["10.0.2.2"]["received"]["packets"]
        + before["10.0.2.2"]["forwarded_learnt"]["packets"]
        > 0
    )


def test_install_is_idempotent_and_status_says_in_sync(lab: RescueLab) -> None:
    assert lab.install("s2").startswith("rescue: already installed")
    status = lab.status("s2")
    assert status["in_sync"] is None
    checked = lab.cli("s2", "rescue", "status", "-c", str(lab.config), "--json")
    assert '"in_sync": true' in checked.stdout


_PROBE_COUNTER = (
    "add table inet probe_count",
    "add chain inet probe_count seen { type filter hook prerouting priority -500 ; }",
    "add rule inet probe_count seen iifname anycast-rsc ip saddr 169.254.90.66 counter",
)


def _probe_packets_on_overlay(lab: RescueLab) -> int:
    """Packets from x's fake overlay address that came out of s1's VXLAN device."""
    listing = json.loads(lab.run("s1", "nft", "-j", "list", "table", "inet", "probe_count").stdout)
    counters = [
        expression["counter"]["packets"]
        for item in listing["nftables"]
        if "rule" in item
        for expression in item["rule"]["expr"]
        if "counter" in expression
    ]
    assert len(counters) == 1, listing
    return int(counters[0])


def _snapshot(lab: RescueLab, node: str) -> dict[str, str]:
    """Everything rescue could touch in a node, as text."""
    commands = {
        "sysctl": ["sysctl", "-a"],
        "links": ["ip", "-d", "link", "show"],
        "addresses": ["ip", "-d", "address", "show"],
        "routes4": ["ip", "-4", "route", "show", "table", "all"],
        "routes6": ["ip", "-6", "route", "show", "table", "all"],
        "neighbours": ["ip", "neigh", "show", "nud", "permanent"],
        "fdb": ["bridge", "fdb", "show"],
        "ruleset": ["nft", "list", "ruleset"],
    }
    snapshot = {name: lab.run(node, *argv).stdout for name, argv in commands.items()}
    # Counters of conntrack and of the kernel's random pool change by themselves.
    snapshot["sysctl"] = "\n".join(
        line
        for line in snapshot["sysctl"].splitlines()
        if line.startswith("net.") and "nf_conntrack_count" not in line
    )
    return snapshot


def test_remove_restores_the_host_exactly(lab: RescueLab, tmp_path: Path) -> None:
    """On h (never touched by other tests): install, then remove, and compare."""
    config = tmp_path / "h.yaml"
    config.write_text(
        (lab.config.read_text())
        .replace('  - {prefix: "fd00:255::1/128", services: [web]}\n', "")
        .replace("members: [10.0.1.2, 10.0.2.2, 10.0.3.2]", "members: [10.0.8.2, 10.0.1.2]"),
        encoding="utf-8",
    )
    config.chmod(0o644)
    pristine = _snapshot(lab, "h")
    lab.install("h", config)
    installed = _snapshot(lab, "h")
    assert installed["links"] != pristine["links"]
    assert installed["ruleset"] != pristine["ruleset"]
    removed = lab.cli("h", "rescue", "remove").stdout
    assert removed.startswith("rescue: removed tables ip; devices anycast-fb, anycast-rsc")
    after = _snapshot(lab, "h")
    for name, text in pristine.items():
        assert after[name] == text, name
    assert lab.cli("h", "rescue", "remove").stdout.startswith("rescue: nothing installed")


STALE = """
import socket, sys
from pyroute2 import NFCTSocket
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
orig = NFCTAttrTuple(saddr="10.0.100.2", daddr="10.255.0.1", proto=6, sport=4242, dport=8080)
with NFCTSocket(nfgen_family=socket.AF_INET) as ct:
    if sys.argv[1] == "add":
        reply = NFCTAttrTuple(saddr="10.255.0.1", daddr="10.0.100.2", proto=6, sport=8080,
                              dport=4242)
        ct.entry("add", timeout=3600, status=14, tuple_orig=orig, tuple_reply=reply,
                 protoinfo={"attrs": [["CTA_PROTOINFO_TCP",
                                       {"attrs": [["CTA_PROTOINFO_TCP_STATE", 3]]}]]})
    else:
        try:
            ct.entry("get", tuple_orig=orig)
            print("present")
        except Exception:
            print("absent")
"""


def test_take_over_forgets_conntrack_entries_no_socket_holds(lab: RescueLab) -> None:
    """An ESTABLISHED entry for a connection that ended while conntrack was not watching
    would claim that 4-tuple as ours if a client reused it: a first install deletes it."""
    lab.cli("s1", "rescue", "remove")
    lab.run("s1", sys.executable, "-c", STALE, "add")
    assert lab.run("s1", sys.executable, "-c", STALE, "get").stdout.strip() == "present"
    out = lab.install("s1")
    assert re.search(r"[1-9]\d* stale entries forgotten", out), out
    assert lab.run("s1", sys.executable, "-c", STALE, "get").stdout.strip() == "absent"


def test_a_group_that_grows_around_a_member_moves_its_position(
    lab: RescueLab, tmp_path: Path
) -> None:
    """s3 is last of two, then third of four: its overlay addresses move, and the kernel
    drops the neighbours of the old ones by itself. Learnt membership does this whenever
    members join below a server's address; the apply must not fail on what is gone."""
    try:
        small = write_config(tmp_path / "small.yaml", members=["10.0.3.2", "10.0.9.2"])
        lab.install("s3", small)
        grown = write_config(
            tmp_path / "grown.yaml", members=["10.0.1.2", "10.0.2.2", "10.0.3.2", "10.0.9.2"]
        )
        lab.install("s3", grown)
        status = lab.status("s3")
        assert status["devices"]["anycast-rsc"]["peers"] == ["10.0.1.2", "10.0.2.2", "10.0.9.2"]
        checked = lab.cli("s3", "rescue", "status", "-c", str(grown), "--json")
        assert '"in_sync": true' in checked.stdout
    finally:
        lab.install("s3")


def test_a_flushed_ruleset_is_repaired_at_once(lab: RescueLab) -> None:
    """A host firewall's reload (``flush ruleset``) on a server that is rescuing others'
    sessions: ``rescue install --watch`` (what a sidecar does too) puts the full table
    back at once and takes the connections over again.

    The gap (the flush returned -> the tables were written) and the sessions broken in it
    are written to ``flush-gap.json`` in the lab's work directory, not asserted: both are
    speed figures (the issue's target, at most 1% broken, depends on how busy the host is:
    2 of 120 on a loaded CI machine, 0 of 120 on a quiet one). What is asserted is a bound
    only an event-driven repair meets: with the 30 s periodic check alone, every session s1
    rescues for s3 (about a third) would meet the local stack and be reset.
    """
    watcher = lab.lab.popen(
        "s1",
        [*WATCH, "-c", str(lab.config)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    flushed: list[float] = []
    try:
        assert watcher.stdout is not None
        lines = iter(watcher.stdout.readline, "")
        assert any("watching" in line for line in lines), "the watcher never started"

        def flush_during_rescue() -> None:
            lab.set_paths(["s1", "s2"])  # s3 withdrawn: s1 rescues s3's sessions
            time.sleep(2)
            lab.run("s1", "nft", "flush", "ruleset")
            flushed.append(time.time())

        summary = lab.hold(4, SESSIONS, flush_during_rescue, interval=1.0, settle=6)
        # The flow directory's netdev table came back with the ip table, current...
        tables = lab.status("s1")["tables"]
        assert tables["netdev"]["marker"] == tables["ip"]["marker"], tables
        # ...and deleted alone (``flush ruleset netdev``), it is written back too.
        lab.run("s1", "nft", "flush", "ruleset", "netdev")
        alone = time.monotonic()
        wait_until(
            lambda: (
                lab.run(
                    "s1", "nft", "list", "table", "netdev", "anycast_rescue", check=False
                ).returncode
                == 0
            ),
            timeout=3,
            message="the netdev table deleted alone was not written back",
        )
        netdev_back = time.monotonic() - alone
        tables = lab.status("s1")["tables"]
        assert tables["netdev"]["marker"] == tables["ip"]["marker"], tables
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    back = [float(m) for m in re.findall(r"tables back in \d+ ms at=([\d.]+)", out)]
    repaired = [float(m) for m in re.findall(r"repaired in \d+ ms at=([\d.]+)", out)]
    assert back, f"no repair reported: {out!r}"
    assert repaired, f"no take-over after the repair: {out!r}"
    assert lab.status("s1")["tables"]["ip"]["mode"] == "full"
    figures = {
        "tables_back_ms": round((back[0] - flushed[0]) * 1000, 1),
        "taken_over_ms": round((repaired[0] - flushed[0]) * 1000, 1),
        "sessions": SESSIONS,
        "broken": summary["broken"],
        "netdev_alone_back_s_upper_bound": round(netdev_back, 2),
    }
    (lab.workdir / "flush-gap.json").write_text(json.dumps(figures), encoding="utf-8")
    print(f"flush ruleset during rescue: {figures}")
    assert summary["broken"] < SESSIONS // 10, summary["broken_by_reason"]


def _flush_gap(lab: RescueLab, gap: float) -> dict[str, Any]:
    """s1 rescues s3's sessions; its ruleset is flushed with nothing to repair it, and
    ``gap`` seconds later ``rescue install`` puts the tables back (warm, then full)."""

    def flush_then_reinstall() -> None:
        lab.set_paths(["s1", "s2"])
        time.sleep(2)
        lab.run("s1", "nft", "flush", "ruleset")
        time.sleep(gap)
        lab.install("s1")

    # Timeout: a session may retransmit through the gap and the reinstall (seconds).
    return lab.hold(4, SESSIONS, flush_then_reinstall, interval=1.0, settle=8, timeout=12)


def test_the_reset_guard_makes_a_long_flush_gap_harmless(lab: RescueLab) -> None:
    """A gap of 1.5 s plus a reinstall (no watcher: a data-path-only member repaired by
    hand): the sessions s1 rescues that send into it meet the local stack, whose resets
    the guard drops (counted by the qdisc); they retransmit into the full table."""
    assert lab.status("s1")["reset_guard"] == ["eth1"]
    dropped = lab.guard_drops("s1")
    summary = _flush_gap(lab, 1.5)
    held = lab.guard_drops("s1") - dropped
    print(f"1.5 s flush gap, guarded: {summary['broken']} of {SESSIONS} broken, {held} held")
    assert held > 0
    assert summary["started_on"].get("s3", 0) > 0
    assert summary["broken"] == 0, summary["broken_by_reason"]


def test_a_missing_guard_is_drift_and_install_puts_it_back(lab: RescueLab) -> None:
    """tc is not nftables: deleting the filter by hand leaves the tables in place, and
    status with the config says out of sync until an install puts the filter back."""
    assert lab.status("s2")["reset_guard"] == ["eth1"]
    lab.run("s2", "tc", "filter", "del", "dev", "eth1", "egress", "pref", "4242")
    assert lab.status("s2")["reset_guard"] == []
    checked = lab.cli("s2", "rescue", "status", "-c", str(lab.config), "--json")
    assert '"in_sync": false' in checked.stdout
    lab.install("s2")
    assert lab.status("s2")["reset_guard"] == ["eth1"]
    checked = lab.cli("s2", "rescue", "status", "-c", str(lab.config), "--json")
    assert '"in_sync": true' in checked.stdout


def test_without_the_guard_a_long_flush_gap_resets_sessions(lab: RescueLab, tmp_path: Path) -> None:
    """The control: the same gap with ``reset_guard_mark: 0``."""
    lab.install_all(write_config(tmp_path / "unguarded.yaml", extra="  reset_guard_mark: 0\n"))
    assert lab.status("s1")["reset_guard"] == []
    summary = _flush_gap(lab, 1.5)
    print(f"1.5 s flush gap, unguarded: {summary['broken_by_reason']} of {SESSIONS}")
    assert summary["broken_by_reason"].get("reset", 0) > 0, summary


def test_a_group_of_a_thousand_installs_and_rescues(lab: RescueLab, tmp_path: Path) -> None:
    """1,000 members (s1..s3 and 997 that do not exist): check-config passes, every table
    and overlay installs (one dup per rule: the overlay replicates), and s3's sessions,
    withdrawn, are rescued between the real members.

    Blind replication only: with the flow directory, 997 of the 1,000 directory members
    would not exist, every moved flow would wait out answer_timeout first, and on this
    busy 2-core machine a few of 30 sessions then missed the client's patience (the
    kernel accepting a 1,000-member table with the directory is test_render_nft's)."""
    fake = [str(ipaddress.ip_address("10.200.0.1") + i) for i in range(997)]
    budget = "".join(
        f"  {name}: 10000000\n"
        for name in ("blind_copy_rate", "blind_copy_burst", "blind_source_rate")
    )
    big = write_config(
        tmp_path / "thousand.yaml",
        members=[*MEMBERS, *fake],
        extra=f"  overlay_ipv4: 169.254.80.0/21\n{budget}  blind_source_burst: 10000000\n"
        "  directory: {enabled: false}\n",
    )
    check = subprocess.run(
        [sys.executable, "-m", "anycast_announcer", "check-config", str(big)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    try:
        with ThreadPoolExecutor(len(SERVERS)) as pool:
            outputs = list(pool.map(lambda node: lab.install(node, big), SERVERS))
        assert all(out.startswith("rescue: installed") for out in outputs), outputs
        assert len(lab.status("s1")["devices"]["anycast-rsc"]["peers"]) == 999
        summary = lab.hold(4, 30, lambda: lab.set_paths(["s1", "s2"]))
    finally:
        lab.remove_all()  # the next test's reset installs the three-member group afresh
    assert summary["started_on"].get("s3", 0) > 0
    assert summary["broken"] == 0, summary["broken_by_reason"]


def test_full_flow_sets_fail_closed(lab: RescueLab, tmp_path: Path) -> None:
    """Flow sets of 1,024 entries and a budget too large to bind: a random-tuple ACK
    flood fills the probation sets. Its packets are then dropped (``blind_refused``),
    not handed to the local stack, and the sessions withdrawn from s3 and learnt before
    the flood keep being rescued. (A flood tuple that did get a probation and repeats
    after it is an orphan and is reset, as designed: the sender's ports repeat.)"""
    budget = "".join(
        f"  {name}: 10000000\n"
        for name in ("blind_copy_rate", "blind_copy_burst", "blind_source_rate")
    )
    small = write_config(
        tmp_path / "small.yaml",
        extra=f"  flow_table_size: 1024\n{budget}  blind_source_burst: 10000000\n",
    )
    lab.install_all(small)
    before = lab.counters()
    flooding: list[subprocess.Popen[str]] = []

    def withdraw_then_flood() -> None:
        lab.set_paths(["s1", "s2"])
        time.sleep(2)  # s3's sessions are rescued and learnt
        argv = ["tests.benchmarks.ackflood", "10.0.100.2", "10.255.0.1", "8080", "3000", "5"]
        flooding.append(
            lab.lab.popen(
                "client",
                [sys.executable, "-m", *argv],
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )

    try:
        summary = lab.hold(4, 30, withdraw_then_flood, settle=7, timeout=15)
    finally:
        for sender in flooding:
            sender.communicate(timeout=60)
    after = lab.counters()
    assert summary["started_on"].get("s3", 0) > 0
    assert total(after, "blind_refused") > total(before, "blind_refused")
    assert summary["broken"] == 0, summary["broken_by_reason"]


PEERS_OF_S3 = ("10_0_1_2", "10_0_2_2")


def test_a_full_feedback_set_sends_no_feedback(lab: RescueLab, tmp_path: Path) -> None:
    """s3's ``fed_<peer>`` sets are full (1,024 flows nobody sends, for 10 s) when its
    sessions are withdrawn: the copies s1 and s2 hand over still reach s3's sessions,
    but s3 sends no feedback for them (fail closed: a full meter set used to mean a
    feedback copy for every packet). Probation outlasts the fill, so once the sets
    drain the flows are learnt and none breaks."""
    small = write_config(tmp_path / "fed.yaml", extra="  flow_table_size: 1024\n  probation: 20\n")
    lab.install_all(small)
    received = [f"rx_{peer}" for peer in PEERS_OF_S3]
    fed = [f"fbtx_{peer}" for peer in PEERS_OF_S3]
    window: dict[str, Any] = {}

    def withdraw_with_full_feedback_sets() -> None:
        window["before"] = (lab.counter("s3", *received), lab.counter("s3", *fed))
        filled = time.monotonic()
        lab.fill_sets("s3", [f"fed_{peer}" for peer in PEERS_OF_S3], 1024, timeout=10)
        lab.set_paths(["s1", "s2"])
        time.sleep(3)
        window["during"] = (lab.counter("s3", *received), lab.counter("s3", *fed))
        window["elapsed"] = time.monotonic() - filled

    summary = lab.hold(4, 40, withdraw_with_full_feedback_sets, settle=14, timeout=5)
    (rx_before, fb_before), (rx_during, fb_during) = window["before"], window["during"]
    assert window["elapsed"] < 10, "the window outlasted the fill: nothing was measured"
    assert summary["started_on"].get("s3", 0) > 0
    assert rx_during > rx_before
    assert fb_during == fb_before, (rx_during - rx_before, fb_during - fb_before)
    # Drained: feedback resumes, and every session held on.
    assert lab.counter("s3", *fed) > fb_during
    assert summary["broken"] == 0, summary["broken_by_reason"]


def test_a_moved_flow_meeting_full_flow_sets_is_dropped_not_reset(
    lab: RescueLab, tmp_path: Path
) -> None:
    """s1's and s2's ``probation`` and ``rescuing`` sets are full (1,024 flows nobody
    sends, for 6 s) when s3 is withdrawn: the packets of s3's sessions that reach them
    cannot start a probation and are dropped (``blind_refused``), not handed to the
    local stack. The client sees no reset: it retransmits, and once the sets drain the
    flows are replicated, claimed by s3 and rescued."""
    small = write_config(tmp_path / "full.yaml", extra="  flow_table_size: 1024\n")
    lab.install_all(small)
    window: dict[str, Any] = {}
    forwarders = ("s1", "s2")

    def withdraw_with_full_flow_sets() -> None:
        window["before"] = lab.counters()
        filled = time.monotonic()
        for node in forwarders:
            lab.fill_sets(node, ["probation", "rescuing"], 1024, timeout=6)
        lab.set_paths(["s1", "s2"])
        time.sleep(1)
        window["refused"] = sum(lab.counter(node, "blind_refused") for node in forwarders)
        window["orphans"] = sum(lab.counter(node, "orphans") for node in forwarders)
        window["elapsed"] = time.monotonic() - filled

    # A ping may wait 15 s: dropped until the sets drain, then TCP's backoff.
    summary = lab.hold(4, 60, withdraw_with_full_flow_sets, settle=16, timeout=15)
    after, before = lab.counters(), window["before"]
    assert window["elapsed"] < 6, "the window outlasted the fill: nothing was measured"
    assert summary["started_on"].get("s3", 0) > 0
    assert window["refused"] > total(before, "blind_refused")
    assert window["orphans"] == total(before, "orphans")
    # Drained: the same flows were replicated and claimed.
    assert total(after, "replicated") > total(before, "replicated")
    assert summary["broken"] == 0, summary["broken_by_reason"]
