"""The leaf-spine fabric with real sidecars: cumulative weights, traffic shares, failures.

One deployment of ``containerlab/leaf-spine`` (network namespaces, FRR 8.4 on two spines
and three leaves) serves the whole module; every server runs the lab TCP service and
``anycast-announcer run`` with its own config from the lab folder. Each test starts from
the healthy fabric and the ``healthy`` fixture puts it back afterwards (services, sidecars
with their lab config, links), so the tests do not depend on their order.

Timings are printed and recorded with ``record_property``, never asserted.
The lab announces a tenth of the nominal bandwidths (see the topology header: FRR 8.4
cannot carry leaf1's 40G sum); shares and weights depend only on the ratios.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import BgpWait
from tests.fabric.fabric import (
    ANYCAST,
    MEMBER,
    PLAN,
    SERVERS,
    SPINES,
    TOPOLOGY,
    Fabric,
    expected_shares,
    kernel_weights,
    received_bandwidth,
    server_shares,
    weights_match,
)
from tests.integration.sidecars import Sidecar
from tests.lablib import (
    REPO_ROOT,
    RecordProperty,
    deployed,
    require_lab_host,
    unique_lab_name,
    wait_until,
)

pytestmark = pytest.mark.fabric

SHARE_TOLERANCE = 0.03  # 3 percentage points
# 4,000 rather than the minimum 2,000: the largest share (54%) then has a binomial
# standard deviation of 0.8 points, so 3 points is a 3.8-sigma bound, not a coin toss.
CONNECTIONS = 4000
RESULTS = REPO_ROOT / "results" / "fabric-sessions.json"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric]:
    require_lab_host()
    workdir = tmp_path_factory.mktemp("leaf-spine")
    with deployed(
        TOPOLOGY,
        name=unique_lab_name("ls"),
        start_cmds=False,
        wait_bgp=BgpWait.ROUTERS,
        wait_timeout=60,
    ) as lab:
        state = Fabric(lab, workdir)
        try:
            state.restore(timeout=60)
            yield state
        finally:
            state.stop_all()


@pytest.fixture
def healthy(fabric: Fabric) -> Iterator[Fabric]:
    """The healthy fabric before the test, and again after it, whatever the test did."""
    fabric.restore()
    try:
        yield fabric
    finally:
        fabric.restore()


def assert_shares(result: dict[str, Any], expected: dict[str, float]) -> dict[str, float]:
    """Every connection answered, and each server within 3 points of its share."""
    assert result["failed"] == 0, result
    answers: dict[str, int] = result["answers"]
    total = sum(answers.values())
    measured = {server: answers.get(server, 0) / total for server in SERVERS}
    report = {
        server: f"{measured[server]:.1%} (want {expected.get(server, 0):.1%})" for server in SERVERS
    }
    print(f"shares over {total} connections: {report}")
    for server in SERVERS:
        assert abs(measured[server] - expected.get(server, 0.0)) <= SHARE_TOLERANCE, report
    return measured


def lb_gbps(values: dict[str, float]) -> dict[str, float]:
    return {peer: round(value * 8 / 1e9, 3) for peer, value in values.items()}


# Leaf -> the servers' addresses on it (srv4 is dual-homed: one pair per leaf).
BFD_PEERS = {
    "leaf1": ("10.2.1.2", "fd00:2:1::2", "10.2.2.2", "fd00:2:2::2", "10.2.4.2", "fd00:2:4::2"),
    "leaf2": ("10.2.3.2", "fd00:2:3::2", "10.2.5.2", "fd00:2:5::2"),
}


def test_the_lab_ships_with_bfd_on_every_server_session(healthy: Fabric) -> None:
    """Each leaf runs bfdd; every server session is up at 300 ms x 3 with hold 9 s."""
    for leaf, servers in BFD_PEERS.items():
        # bfdd read the profile (a 'bfd' block after an 'exit' it does not know is lost).
        bfdd = healthy.lab.run(
            leaf, ["vtysh", "-N", healthy.lab.ns(leaf), "-c", "show running-config bfdd"]
        ).stdout
        assert " profile servers" in bfdd, (leaf, bfdd)
        # The anti-spoofing filter is loaded and has dropped nothing of a healthy fabric.
        spoofed = healthy.lab.run(
            leaf, ["nft", "list", "counter", "inet", "leaf-antispoof", "spoofed"]
        ).stdout
        assert "packets 0 " in spoofed, (leaf, spoofed)
        peers = {p["peer"]: p for p in healthy.lab.vtysh_json(leaf, "show bfd peers json")}
        for server in servers:
            assert peers[server]["status"] == "up", (leaf, server, peers.get(server))
            assert peers[server]["remote-transmit-interval"] == 300
            assert peers[server]["remote-detect-multiplier"] == 3
            neighbor = healthy.lab.vtysh_json(leaf, f"show bgp neighbor {server} json")[server]
            assert neighbor["bgpTimerHoldTimeMsecs"] == 9000, (leaf, server)


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_weights_follow_cumulative_bandwidth_at_every_hop(
    healthy: Fabric, family: int, record_property: RecordProperty
) -> None:
    """Leaves weight their servers, spines weight leaf1 40G : leaf2 6G (cumulative, with
    srv4 counted half on each leaf), leaf3 splits evenly over the spines; the spines and
    leaf3 receive the re-originated sums in the link-bandwidth community."""
    fabric = healthy
    prefix = ANYCAST[family]
    expected = expected_shares(fabric.baseline_bandwidth(), PLAN["homes"])
    weights = {router: kernel_weights(fabric.lab, router, prefix) for router in expected}
    print(f"IPv{family} kernel weights: {weights}")
    record_property(f"weights_ipv{family}", json.dumps(weights))
    for router, shares in expected.items():
        assert weights_match(weights[router], shares), (router, weights[router], shares)
    # Bytes/s in the community: leaf1 sends its sum (1 + 2.5 + 0.5 Gbit/s, the lab's
    # tenth of 40G), leaf2 0.6, each spine 4.6.
    for spine in SPINES:
        seen = lb_gbps(received_bandwidth(fabric.lab, spine, prefix))
        print(f"{spine} receives (Gbit/s): {seen}")
        assert sorted(seen.values()) == pytest.approx([0.6, 4.0], rel=1e-3), seen
    seen = lb_gbps(received_bandwidth(fabric.lab, "leaf3", prefix))
    print(f"leaf3 receives (Gbit/s): {seen}")
    assert sorted(seen.values()) == pytest.approx([4.6, 4.6], rel=1e-3), seen


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_new_connections_split_by_bandwidth(
    healthy: Fabric, family: int, record_property: RecordProperty
) -> None:
    """4,000 connections from the client land on each server within 3 points of its
    bandwidth share: 10/46, 25/46, 1/46, 10/46."""
    result = healthy.shares(family, CONNECTIONS)
    measured = assert_shares(result, server_shares(healthy.baseline_bandwidth()))
    record_property(f"shares_ipv{family}", json.dumps(measured))


def test_killed_service_is_withdrawn_hop_by_hop(
    healthy: Fabric, record_property: RecordProperty
) -> None:
    """srv2's service dies: leaf1 drops srv2, the spines reweigh leaf1 (15G) against leaf2
    (6G), leaf3 learns the new sums; afterwards every new connection succeeds."""
    fabric = healthy
    prefix = ANYCAST[4]
    after = {k: v for k, v in fabric.baseline_bandwidth().items() if k != "srv2"}
    expected = expected_shares(after, PLAN["homes"])
    leaf3_sum = sum(after.values()) / 1000  # Gbit/s each spine passes on
    hops: dict[str, float] = {}

    def leaf1_dropped() -> bool:
        return "srv2" not in kernel_weights(fabric.lab, "leaf1", prefix)

    def spines_reweighed() -> bool:
        return all(
            weights_match(kernel_weights(fabric.lab, spine, prefix), expected[spine])
            for spine in SPINES
        )

    def leaf3_updated() -> bool:
        seen = lb_gbps(received_bandwidth(fabric.lab, "leaf3", prefix)).values()
        return len(seen) == 2 and all(abs(v - leaf3_sum) < 0.01 for v in seen)

    checks = {"leaf1": leaf1_dropped, "spines": spines_reweighed, "leaf3": leaf3_updated}
    started = time.monotonic()
    fabric.kill_service("srv2")
    deadline = started + 20
    while len(hops) < len(checks):
        now = time.monotonic()
        for name, check in checks.items():
            if name not in hops and check():
                hops[name] = round(time.monotonic() - started, 3)
        if now > deadline:
            raise AssertionError(
                f"not converged after 20 s; converged hops: {hops}\n"
                f"{fabric.mismatches(after, PLAN['homes'], 4)}"
            )
        time.sleep(0.05)  # poll interval, bounded by the deadline above
    print(f"convergence after srv2's service died (s): {hops}")
    record_property("withdraw_convergence_seconds", json.dumps(hops))
    fabric.wait_converged(
        after, PLAN["homes"], 4, timeout=10, message="weights never matched the model without srv2"
    )
    assert_shares(fabric.shares(4, CONNECTIONS), server_shares(after))


def test_a_leaf_without_servers_leaves_the_spines_and_srv4_carries_its_full_bandwidth(
    healthy: Fabric, record_property: RecordProperty
) -> None:
    """srv3's service stops and srv4's link to leaf2 goes down, so leaf2 has no server:
    the spines keep only leaf1, and srv4's surviving session to leaf1 carries its full
    bandwidth (up_sessions), which leaf1 receives and weighs."""
    fabric = healthy
    prefix = ANYCAST[4]
    started = time.monotonic()
    fabric.kill_service("srv3")
    fabric.set_link("srv4", PLAN["server_links"]["srv4"]["leaf2"], up=False)
    after = {k: v for k, v in fabric.baseline_bandwidth().items() if k != "srv3"}
    homes = {**PLAN["homes"], "srv4": ["leaf1"]}
    fabric.wait_converged(after, homes, 4, timeout=20, message="the fabric never dropped leaf2")
    seconds = round(time.monotonic() - started, 3)
    print(f"leaf2 out of the spines' next hops and srv4 reweighed after {seconds}s")
    record_property("leaf_down_convergence_seconds", seconds)
    for spine in SPINES:
        assert set(kernel_weights(fabric.lab, spine, prefix)) == {"leaf1"}
    srv4_full = fabric.base_bandwidth("srv4") * 1e6 / 8  # bytes/s
    values = received_bandwidth(fabric.lab, "leaf1", prefix)
    assert values["10.2.4.2"] == pytest.approx(srv4_full, rel=1e-3), values
    events = fabric.sidecars["srv4"].events("bgp_session_changed")
    assert any(e.get("peer") == "10.2.5.1" for e in events), events
    assert_shares(fabric.shares(4, CONNECTIONS), server_shares(after))


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_bandwidth_change_moves_weights_and_shares(
    healthy: Fabric, family: int, record_property: RecordProperty
) -> None:
    """srv1 restarted with 25G instead of 10G: every hop reweighs (leaf1 now 55G against
    6G) and new connections follow (25/61, 25/61, 1/61, 10/61)."""
    fabric = healthy
    bandwidth = {**fabric.baseline_bandwidth(), "srv1": fabric.base_bandwidth("srv2")}
    started = time.monotonic()
    fabric.stop_sidecar("srv1")
    fabric.start_sidecar("srv1", bandwidth["srv1"])
    fabric.wait_converged(
        bandwidth,
        PLAN["homes"],
        family,
        timeout=30,
        message="weights never followed srv1's new bandwidth",
    )
    seconds = round(time.monotonic() - started, 3)
    print(
        f"IPv{family}: reweighed {seconds}s after the restart began: "
        f"{ {r: kernel_weights(fabric.lab, r, ANYCAST[family]) for r in ('leaf1', 'spine1')} }"
    )
    record_property(f"reweigh_seconds_ipv{family}", seconds)
    assert_shares(fabric.shares(family, CONNECTIONS), server_shares(bandwidth))


def test_long_lived_sessions_through_failure_addition_and_weight_change(
    healthy: Fabric, tmp_path: Path, record_property: RecordProperty
) -> None:
    """Established sessions across three events, each with a fresh set of 300: srv2's
    service dies; srv2's sidecar, kept down meanwhile, starts (a server is added); srv1's
    sidecar restarts with a new bandwidth. Counts go to results/fabric-sessions.json."""
    fabric = healthy
    base = fabric.baseline_bandwidth()
    without_srv2 = {k: v for k, v in base.items() if k != "srv2"}
    reweighed = {**base, "srv1": base["srv2"]}
    report: dict[str, Any] = {"sessions_per_event": 300, "events": {}}

    def observe(name: str, act: Any, bandwidth: dict[str, float]) -> dict[str, Any]:
        holder = fabric.hold(4, 300, tmp_path / f"{name}.ready")
        try:
            start = holder.wait_ready()
            assert start["total"] == 300, start
            began = time.monotonic()
            event_at = time.time()
            act()
            fabric.wait_converged(
                bandwidth, PLAN["homes"], 4, timeout=30, message=f"{name}: fabric never converged"
            )
            converged = round(time.monotonic() - began, 3)
            # A measurement window, not a wait for convergence: every session pings
            # eight more times (interval 0.25 s) on the converged fabric.
            time.sleep(2.0)
            summary = holder.stop()
        finally:
            holder.kill()
        delays = sorted(s["at"] - event_at for s in summary.pop("broken_sessions"))
        summary["convergence_seconds"] = converged
        summary["broken_seconds_after_event"] = (
            {
                "first": round(delays[0], 3),
                "median": round(delays[len(delays) // 2], 3),
                "last": round(delays[-1], 3),
            }
            if delays
            else None
        )
        counts_add_up = (
            summary["total"] == summary["survived"] + summary["broken"]
            and sum(summary["started_on"].values()) == summary["total"]
            and sum(summary["broken_by_server"].values()) == summary["broken"]
        )
        assert counts_add_up, summary
        print(
            f"{name}: {summary['broken']}/{summary['total']} broken "
            f"(started on {summary['started_on']}, broken {summary['broken_by_server']}, "
            f"reasons {summary['broken_by_reason']}), converged in {converged}s"
        )
        report["events"][name] = summary
        return summary

    def kill_srv2() -> None:
        fabric.kill_service("srv2")

    failure = observe("failure_srv2_service_killed", kill_srv2, without_srv2)
    on_srv2 = failure["started_on"].get("srv2", 0)
    assert on_srv2 > 0, failure
    assert failure["broken"] >= on_srv2, failure
    assert failure["broken_by_server"].get("srv2", 0) == on_srv2, failure

    # srv2 comes back as a new server: service up, its sidecar kept down until the event.
    fabric.stop_sidecar("srv2")
    fabric.start_service("srv2")

    def add_srv2() -> None:
        fabric.start_sidecar("srv2")

    observe("addition_srv2_sidecar_started", add_srv2, base)

    def reweigh_srv1() -> None:
        fabric.stop_sidecar("srv1")
        fabric.start_sidecar("srv1", reweighed["srv1"])

    observe("weight_change_srv1_restarted_10g_to_25g", reweigh_srv1, reweighed)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    record_property(
        "sessions", json.dumps({name: event["broken"] for name, event in report["events"].items()})
    )


# -- flow rescue (docs/rescue.md) ---------------------------------------------------------

RESCUE_RESULTS = REPO_ROOT / "results" / "fabric-rescue.json"
SPINE_LEAF3_LINKS = (("spine1", "eth3"), ("spine2", "eth3"), ("leaf3", "eth1"), ("leaf3", "eth2"))


def _held_through(
    fabric: Fabric, family: int, tmp_path: Path, name: str, act: Any, bandwidth: dict[str, float]
) -> dict[str, Any]:
    """300 sessions across one event, until the fabric converged and 2 s more."""
    holder = fabric.hold(family, 300, tmp_path / f"{name}.ready")
    try:
        start = holder.wait_ready()
        assert start["total"] == 300, start
        act()
        fabric.wait_converged(
            bandwidth, PLAN["homes"], family, timeout=30, message=f"{name}: never converged"
        )
        time.sleep(2.0)  # a measurement window: eight more pings per session
        summary = holder.stop()
    finally:
        holder.kill()
    summary.pop("broken_sessions")
    print(
        f"{name}: {summary['broken']}/{summary['total']} broken "
        f"(started on {summary['started_on']}, reasons {summary['broken_by_reason']})"
    )
    return summary


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_rescue_keeps_every_session_across_a_withdrawal_and_an_addition(
    healthy: Fabric, family: int, tmp_path: Path, record_property: RecordProperty
) -> None:
    """srv2's sidecar stops (its route is withdrawn, its service keeps running), then
    starts again (a server is added): every hop reweighs and rehashes, and with rescue
    on no session breaks, srv2's own included (they come back to it over the overlay)."""
    fabric = healthy
    base = fabric.baseline_bandwidth()
    without_srv2 = {k: v for k, v in base.items() if k != "srv2"}
    before = fabric.rescue_counters("srv2")
    withdrawal = _held_through(
        fabric, family, tmp_path, "withdrawal", lambda: fabric.stop_sidecar("srv2"), without_srv2
    )
    after = fabric.rescue_counters("srv2")
    addition = _held_through(
        fabric, family, tmp_path, "addition", lambda: fabric.start_sidecar("srv2"), base
    )
    rescued_to_srv2 = sum(p["received"]["packets"] for p in after["peers"]) - sum(
        p["received"]["packets"] for p in before["peers"]
    )
    report = {"withdrawal_srv2": withdrawal, "addition_srv2": addition}
    RESCUE_RESULTS.parent.mkdir(exist_ok=True)
    stored = json.loads(RESCUE_RESULTS.read_text()) if RESCUE_RESULTS.exists() else {}
    stored[f"ipv{family}"] = report
    RESCUE_RESULTS.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    record_property(f"rescue_ipv{family}", json.dumps({k: v["broken"] for k, v in report.items()}))
    assert withdrawal["started_on"].get("srv2", 0) > 0, withdrawal
    assert rescued_to_srv2 > 0
    assert withdrawal["broken"] == 0, withdrawal["broken_by_reason"]
    assert addition["broken"] == 0, addition["broken_by_reason"]


def test_pmtud_completes_through_lower_mtu_spine_leaf3_links(
    healthy: Fabric, record_property: RecordProperty
) -> None:
    """The spine-leaf3 links drop to 1400 (a tunnel on the client's path): the spines'
    ICMP errors reach one server per spine, rescue relays them to the owners, and every
    large download completes, IPv4 and IPv6."""
    fabric = healthy
    try:
        for node, interface in SPINE_LEAF3_LINKS:
            fabric.lab.run(node, ["ip", "link", "set", interface, "mtu", "1400"])
        # The control first: without rescue the downloads of servers the ICMP errors
        # do not reach hang (the issue measured 30 of 60).
        fabric.rescue_off()
        fabric.flush_pmtu()
        control = fabric.downloads(4, 60, 1_000_000, 8)
        fabric.rescue_on()
        fabric.flush_pmtu()
        results = {family: fabric.downloads(family, 60, 1_000_000, 15) for family in (4, 6)}
    finally:
        fabric.rescue_on()
        for node, interface in SPINE_LEAF3_LINKS:
            fabric.lab.run(node, ["ip", "link", "set", interface, "mtu", "9000"])
        fabric.flush_pmtu()
    print(f"large downloads through 1400-byte spine-leaf3 links, no rescue: {control}")
    print(f"... with rescue: {results}")
    record_property("pmtud", json.dumps({"rescue_off_ipv4": control, **results}))
    assert sum(control["hung"].values()) > 0, control
    for family, result in results.items():
        assert result["hung"] == {}, (family, result)
        assert result["failed"] == 0, (family, result)
        assert sum(result["completed"].values()) == 60, (family, result)


MEMBERSHIP_RESULTS = REPO_ROOT / "results" / "fabric-membership.json"
DATA_PATH_ONLY = "10.2.9.2"
"""A data-path-only member whose member route leaf2 originates for it..."""
DATA_PATH_ONLY_ROUTE = "10.254.9.2/32"
"""... in the lab's signalling range (rescue.membership.route_prefixes)."""


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def _first(sidecar: Sidecar, name: str, after: float, holds: Any) -> float | None:
    """Unix time of ``sidecar``'s first ``name`` event after ``after`` that ``holds``."""
    for event in sidecar.events(name):
        if _stamp(event) >= after and holds(event):
            return _stamp(event)
    return None


def _converged(
    fabric: Fabric, nodes: list[str], name: str, after: float, holds: Any, what: str
) -> dict[str, float]:
    """Seconds from ``after`` to each node's first matching event (polled, 20 s)."""

    def seen() -> dict[str, float] | None:
        times = {node: _first(fabric.sidecars[node], name, after, holds) for node in nodes}
        if any(t is None for t in times.values()):
            return None
        return {node: round(t - after, 3) for node, t in times.items() if t is not None}

    return wait_until(seen, timeout=20, message=f"not every member saw {what}")


def _assert_gated_start(
    fabric: Fabric, node: str, started: float, session_up: float
) -> dict[str, float]:
    """``node``, started into a live group, announced its anycast prefix only after its
    data path held every other member: its log shows the apply holding them, then the
    start-up gate opening on an End-of-RIB (FRR 8.4 sends one without graceful restart,
    and ExaBGP 5 passes it through the receive API), then the first acknowledged
    announcement. Seconds from the session coming up to each step are returned."""
    sidecar = fabric.sidecars[node]
    peers = {MEMBER[other] for other in SERVERS if other != node}
    anycast = ANYCAST[4]

    def steps() -> tuple[float, float, float] | None:
        applied = _first(
            sidecar, "rescue_applied", started, lambda e: peers <= set(e.get("peers", []))
        )
        opened = _first(sidecar, "rescue_gate_opened", started, lambda e: True)
        announced = _first(
            sidecar, "route_announced", started, lambda e: e.get("prefix") == anycast
        )
        if applied is None or opened is None or announced is None:
            return None
        return applied, opened, announced

    applied, opened, announced = wait_until(
        steps, timeout=30, message=f"{node} never applied its group, opened its gate, announced"
    )
    gate = [e for e in sidecar.events("rescue_gate_opened") if _stamp(e) >= started]
    assert [e["opened_by"] for e in gate] == ["end_of_rib"], gate
    assert not [e for e in sidecar.events("rescue_gate_timeout") if _stamp(e) >= started]
    assert applied <= opened <= announced, (applied, opened, announced)
    return {
        "data_path_holds_group": round(applied - session_up, 3),
        "gate_opened": round(opened - session_up, 3),
        "anycast_announced": round(announced - session_up, 3),
    }


def test_membership_is_learnt_from_the_fabric_on_every_member(
    healthy: Fabric, record_property: RecordProperty
) -> None:
    """No server lists the others: each learns the group from member routes. srv2's
    sidecar stops (its route is withdrawn: every member holds it down, its data path
    stays), then starts (every member sees it back); leaf2 originates the member route of
    a data-path-only member (every member installs it), then withdraws it. srv2 starts
    with its data path removed, as a new member would: it must announce its anycast
    prefix only once its data path holds the group (the start-up gate). The seconds
    from each BGP change to each member's reaction go to results/fabric-membership.json
    (issue 17's target: 2 s); the test asserts only that every member got there."""
    fabric = healthy
    others = [node for node in SERVERS if node != "srv2"]
    srv2 = MEMBER["srv2"]
    results: dict[str, Any] = {}

    before = time.time()
    fabric.stop_sidecar("srv2")
    # SIGTERM withdraws first, then stops ExaBGP: the route leaves with the withdrawal.
    down = wait_until(
        lambda: _first(
            fabric.sidecars["srv2"],
            "route_withdrawn",
            before,
            lambda e: e.get("prefix") == "10.254.2.2/32",
        ),
        timeout=10,
        message="srv2 never withdrew its member route",
    )
    results["member_withdrawn_held_down"] = _converged(
        fabric,
        others,
        "rescue_members_changed",
        down,
        lambda e: srv2 in e.get("held_down", []),
        f"{srv2} held down",
    )
    for node in others:
        assert srv2 in fabric.installed_peers(node), (node, "hold-down must keep srv2")

    # srv2 comes back as a brand-new member: no data path to inherit the group from, so
    # only its member routes, learnt after its start, can fill it (the start-up gate).
    fabric.lab.run("srv2", [sys.executable, "-m", "anycast_announcer", "rescue", "remove"])
    before = time.time()
    fabric.start_sidecar("srv2")
    up = wait_until(
        lambda: _first(
            fabric.sidecars["srv2"],
            "bgp_session_changed",
            before,
            lambda e: e.get("peer") == "10.2.2.1" and e.get("new") == "up",
        ),
        timeout=30,
        message="srv2's IPv4 session never came up",
    )
    results["member_back"] = _converged(
        fabric,
        others,
        "rescue_members_changed",
        up,
        lambda e: srv2 in e.get("present", []),
        f"{srv2} back",
    )
    results["srv2_start_up_gate"] = _assert_gated_start(fabric, "srv2", before, up)

    namespace = fabric.lab.ns("leaf2")

    def leaf2(*commands: str, check: bool = True) -> None:
        argv = ["vtysh", "-N", namespace, "-c", "configure terminal", "-c", "router bgp 65102"]
        for command in commands:
            argv += ["-c", command]
        subprocess.run(argv, check=check, capture_output=True, timeout=30)

    try:
        leaf2("no bgp network import-check")
        before = time.time()
        leaf2(
            "address-family ipv4 unicast",
            f"network {DATA_PATH_ONLY_ROUTE} route-map RESCUE-ORIGINATE",
        )
        results["data_path_only_added_installed"] = _converged(
            fabric,
            list(SERVERS),
            "rescue_applied",
            before,
            lambda e: DATA_PATH_ONLY in e.get("peers", []),
            f"{DATA_PATH_ONLY} installed",
        )
        # The new member took buckets from the others: each member empties its flows'
        # registrations once more, reregister_after (5 s) after its own apply, for a
        # directory member that took the change later than it did.
        installed = results["data_path_only_added_installed"]

        def forgotten_again() -> dict[str, float] | None:
            times = {
                node: _first(
                    fabric.sidecars[node],
                    "rescue_registrations_forgotten",
                    before + installed[node] + 4.5,
                    lambda e: "ip" in e.get("families", []),
                )
                for node in SERVERS
            }
            if any(t is None for t in times.values()):
                return None
            return {node: round(t - before, 3) for node, t in times.items() if t is not None}

        results["data_path_only_added_reregistered"] = wait_until(
            forgotten_again,
            timeout=20,
            message="not every member emptied its registrations a second time",
        )
        before = time.time()
        leaf2("address-family ipv4 unicast", f"no network {DATA_PATH_ONLY_ROUTE}")
        results["data_path_only_removed_held_down"] = _converged(
            fabric,
            list(SERVERS),
            "rescue_members_changed",
            before,
            lambda e: DATA_PATH_ONLY in e.get("held_down", []),
            f"{DATA_PATH_ONLY} held down",
        )
    finally:
        # Whatever happened above (an error says "no such network" once it is gone).
        leaf2("address-family ipv4 unicast", f"no network {DATA_PATH_ONLY_ROUTE}", check=False)
        leaf2("bgp network import-check")
    worst = {key: max(values.values()) for key, values in results.items()}
    results["worst"] = worst
    MEMBERSHIP_RESULTS.parent.mkdir(exist_ok=True)
    MEMBERSHIP_RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"membership convergence, seconds per member: {json.dumps(results)}")
    record_property("membership", json.dumps(worst))


def _guard_drops(fabric: Fabric, node: str) -> int:
    """Packets the node's clsact qdiscs dropped: resets the reset guard held back."""
    out = fabric.lab.run(node, ["tc", "-s", "-j", "qdisc", "show"]).stdout
    return sum(int(q.get("drops", 0)) for q in json.loads(out) if q.get("kind") == "clsact")


def test_a_flushed_ruleset_is_repaired_by_the_sidecar(healthy: Fabric, tmp_path: Path) -> None:
    """srv2 is withdrawn (its sidecar stops), so the others rescue its sessions; then
    srv1's host firewall reloads with ``nft flush ruleset``. srv1's sidecar hears it and
    puts the tables back at once.

    The flows srv1 rescues for others that send a packet during the gap meet the local
    stack; its resets are held back by the reset guard (counted as the clsact qdisc's
    drops), and the clients retransmit into the repaired table. How many break (target:
    at most 1% of 300 sessions sending a packet a second) is stored with the gap (flush
    returned -> table listed again, polled) and the resets held in
    results/fabric-rescue.json, not asserted. What is asserted is a bound that only an
    event-driven repair meets: with the 30 s periodic check alone, every flow srv1
    rescues for others would meet the local stack and be reset."""
    fabric = healthy
    without_srv2 = {k: v for k, v in fabric.baseline_bandwidth().items() if k != "srv2"}
    holder = fabric.hold(4, 300, tmp_path / "flush.ready", interval=1.0)
    try:
        assert holder.wait_ready()["total"] == 300
        fabric.stop_sidecar("srv2")
        fabric.wait_converged(without_srv2, PLAN["homes"], 4, timeout=30, message="no convergence")
        time.sleep(2.0)  # srv2's sessions are rescued and learnt by now
        dropped = _guard_drops(fabric, "srv1")
        fabric.lab.run("srv1", ["nft", "flush", "ruleset"])
        flushed = time.monotonic()
        wait_until(
            lambda: "anycast_rescue" in fabric.lab.run("srv1", ["nft", "list", "tables"]).stdout,
            timeout=5,
            interval=0.005,
            message="srv1's sidecar never put the rescue tables back",
        )
        gap = time.monotonic() - flushed
        time.sleep(3.0)  # every session pings three more times
        summary = holder.stop()
        dropped = _guard_drops(fabric, "srv1") - dropped
    finally:
        holder.kill()
    summary.pop("broken_sessions")
    figures = {
        "tables_back_within_ms": round(gap * 1000),
        "broken": summary["broken"],
        "resets_held_by_guard": dropped,
    }
    print(f"flush ruleset on srv1: {figures} of {summary['total']}")
    RESCUE_RESULTS.parent.mkdir(exist_ok=True)
    stored = json.loads(RESCUE_RESULTS.read_text()) if RESCUE_RESULTS.exists() else {}
    stored["flush_ruleset_srv1"] = {**figures, "total": summary["total"]}
    RESCUE_RESULTS.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    assert summary["broken"] < summary["total"] // 10, summary["broken_by_reason"]
