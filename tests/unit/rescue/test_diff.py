"""From installed to desired: device steps and nftables transactions.

``nft-list-table-ip.json`` is real ``nft -j list table ip anycast_rescue`` output of the
table ``plans.plan()`` renders (nftables 1.0.6, rules other than ``info`` trimmed, one
learnt flow added), so the parser is tested against what the kernel really reports.
When the renderer changes, regenerate it: load ``render_table(plan(), Family.IPV4,
device_indexes={"anycast-rsc": 7}).text`` with ``nft -f`` in a namespace that has the two
overlay devices, add ``{ 10.3.0.2 . 40000 . 10.255.0.1 . 8080 }`` to ``owner_10_2_2_2``,
and keep ``nft -j list table ip anycast_rescue`` without the rules of other chains;
``nft-list-table-netdev.json`` is ``nft -j list table netdev anycast_rescue`` of the same
load, whole.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from anycast_announcer.rescue.diff import (
    DEVICE_SYSCTLS,
    InstalledOverlay,
    InstalledTable,
    LinkOpKind,
    egress_script,
    forgets_registrations,
    link_changes,
    parse_egress,
    parse_table,
    registrations_script,
    removal_script,
    table_script,
)
from anycast_announcer.rescue.model import Family, Overlay, RescuePlan
from anycast_announcer.rescue.render import RenderMode, SetShape, render_table, table_shape
from tests.unit.rescue.plans import plan

FIXTURE = Path(__file__).with_name("nft-list-table-ip.json")
EGRESS_FIXTURE = Path(__file__).with_name("nft-list-table-netdev.json")
"""``nft -j list table netdev anycast_rescue`` of the same load (the flow directory's
egress table, written with the ip table's text)."""


def installed_as(overlay: Overlay, index: int = 5, **changes: Any) -> InstalledOverlay:
    """What reading back a device made exactly as ``overlay`` would find."""
    found = InstalledOverlay(
        name=overlay.name,
        index=index,
        kind="vxlan",
        vni=overlay.vni,
        port=overlay.port,
        local=str(overlay.local),
        mac=overlay.mac,
        mtu=overlay.mtu,
        up=True,
        learning=False,
        udp_checksum=overlay.udp_checksum,
        addresses=frozenset({str(overlay.ipv4), str(overlay.ipv6)}),
        neighbors=frozenset((n.address, n.mac) for n in overlay.neighbors),
        fdb=frozenset((e.mac, e.destination) for e in overlay.fdb),
        sysctls={t.format(dev=overlay.name): v for t, v in DEVICE_SYSCTLS.items()},
    )
    return replace(found, **changes)


def both(p: RescuePlan) -> dict[str, InstalledOverlay]:
    return {
        p.rescue.name: installed_as(p.rescue, 5),
        p.feedback.name: installed_as(p.feedback, 6),
    }


def kinds(ops: Any) -> list[LinkOpKind]:
    return [op.kind for op in ops]


def test_nothing_installed_creates_both_overlays_in_a_safe_order() -> None:
    ops = link_changes({}, plan())
    rescue = [op for op in ops if op.device == "anycast-rsc"]
    order = kinds(rescue)
    assert order[0] is LinkOpKind.CREATE_LINK
    # IPv6 autoconfiguration is off before the device goes up.
    assert order.index(LinkOpKind.SET_SYSCTL) < order.index(LinkOpKind.LINK_UP)
    # 2 peers x 2 families, and the broadcast label of each family
    assert order.count(LinkOpKind.ADD_NEIGHBOR) == 6
    # each peer's MAC, and an all-zeros entry per peer (head-end replication)
    assert order.count(LinkOpKind.ADD_FDB) == 4
    fdb = {op.args for op in rescue if op.kind is LinkOpKind.ADD_FDB}
    assert ("00:00:00:00:00:00", "10.2.2.2") in fdb
    neighbors = {op.args for op in rescue if op.kind is LinkOpKind.ADD_NEIGHBOR}
    assert ("169.254.90.126", "ff:ff:ff:ff:ff:ff") in neighbors
    assert {op.args for op in rescue if op.kind is LinkOpKind.ADD_ADDRESS} == {
        ("169.254.90.1/25",),
        ("fe80::a:1/64",),
    }


def test_what_matches_the_plan_needs_no_step() -> None:
    p = plan()
    assert link_changes(both(p), p) == ()


def test_a_new_member_adds_its_neighbours_and_fdb_entries_only() -> None:
    before = plan()
    after = plan(base=before_base_with("10.2.4.2"))
    ops = link_changes(both(before), after)
    assert {op.kind for op in ops} == {LinkOpKind.ADD_NEIGHBOR, LinkOpKind.ADD_FDB}
    assert ("02:52:0a:02:04:02", "10.2.4.2") in {op.args for op in ops}


def test_a_departed_member_is_removed_from_both_overlays() -> None:
    before = plan()
    after = plan(base=before_base_without("10.2.3.2"))
    ops = link_changes(both(before), after)
    assert {(op.kind, op.device, op.args) for op in ops} == {
        (LinkOpKind.DEL_NEIGHBOR, "anycast-rsc", ("169.254.90.3", "02:52:0a:02:03:02")),
        (LinkOpKind.DEL_NEIGHBOR, "anycast-rsc", ("fe80::a:3", "02:52:0a:02:03:02")),
        (LinkOpKind.DEL_FDB, "anycast-rsc", ("02:52:0a:02:03:02", "10.2.3.2")),
        (LinkOpKind.DEL_FDB, "anycast-rsc", ("00:00:00:00:00:00", "10.2.3.2")),
        (LinkOpKind.DEL_NEIGHBOR, "anycast-fb", ("169.254.90.131", "02:46:0a:02:03:02")),
        (LinkOpKind.DEL_NEIGHBOR, "anycast-fb", ("fe80::b:3", "02:46:0a:02:03:02")),
        (LinkOpKind.DEL_FDB, "anycast-fb", ("02:46:0a:02:03:02", "10.2.3.2")),
    }


def test_a_changed_vni_or_port_recreates_the_device() -> None:
    p = plan()
    installed = both(p)
    installed["anycast-rsc"] = replace(installed["anycast-rsc"], vni=99)
    ops = link_changes(installed, p)
    assert kinds(ops)[:2] == [LinkOpKind.DELETE_LINK, LinkOpKind.CREATE_LINK]
    assert {op.device for op in ops} == {"anycast-rsc"}


def test_a_changed_mtu_is_set_in_place() -> None:
    p = plan(mtu=9000)
    ops = link_changes(both(plan(mtu=1500)), p)
    assert [(op.kind, op.args) for op in ops] == [
        (LinkOpKind.SET_LINK, (p.rescue.mac, "8950")),
        (LinkOpKind.SET_LINK, (p.feedback.mac, "8950")),
    ]


def test_a_stray_address_or_sysctl_is_corrected() -> None:
    p = plan()
    installed = both(p)
    installed["anycast-fb"] = replace(
        installed["anycast-fb"],
        addresses=installed["anycast-fb"].addresses | {"fe80::52:aff:fe02:102/64"},
        sysctls={"ipv4/conf/anycast-fb/rp_filter": "1"},
    )
    ops = link_changes(installed, p)
    assert (LinkOpKind.DEL_ADDRESS, ("fe80::52:aff:fe02:102/64",)) in [
        (op.kind, op.args) for op in ops
    ]
    sysctls = [op.args for op in ops if op.kind is LinkOpKind.SET_SYSCTL]
    assert ("ipv4/conf/anycast-fb/rp_filter", "2") in sysctls


def test_removal_deletes_every_device_of_ours() -> None:
    p = plan()
    ops = link_changes(both(p), None)
    assert [(op.kind, op.device) for op in ops] == [
        (LinkOpKind.DELETE_LINK, "anycast-fb"),
        (LinkOpKind.DELETE_LINK, "anycast-rsc"),
    ]


def test_parse_table_reads_what_nft_reports() -> None:
    table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
    assert table.sets["owner_10_2_2_2"] == SetShape(
        "owner_10_2_2_2",
        ("ipv4_addr", "inet_service", "ipv4_addr", "inet_service"),
        frozenset({"timeout"}),
        timeout=5,
        size=65536,
    )
    assert table.sets["anycast"].flags == frozenset({"interval"})
    assert table.chains["prerouting"].hook == "prerouting"
    assert table.chains["prerouting"].priority == -150
    assert table.chains["raw_output"].priority == -300
    assert "fbtx_10_2_3_2" in table.counters
    assert table.marker is not None
    assert table.mode == "full"


def test_the_installed_fixture_is_what_the_plan_renders() -> None:
    """Parsed shapes compare equal to the rendered ones: a reconcile changes nothing."""
    table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
    desired = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 7})
    assert table.marker == desired.marker
    assert table_script(desired, table) is None
    for wanted in desired.shape.sets:
        assert table.sets[wanted.name].comparable() == wanted.comparable()
    assert dict(table.chains) == {c.name: c for c in desired.shape.chains}
    assert table.counters == frozenset(desired.shape.counters)


def test_no_table_is_created_whole() -> None:
    desired = render_table(plan(), Family.IPV4)
    assert table_script(desired, None) == desired.text


def test_an_update_keeps_flow_sets_and_counters_and_refills_static_sets() -> None:
    table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
    desired = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 8})
    script = table_script(desired, table)
    assert script is not None
    head = script.split("table ip anycast_rescue {")[0].splitlines()
    assert head == [
        "flush table ip anycast_rescue",
        "flush set ip anycast_rescue anycast",
        "flush set ip anycast_rescue members",
    ]


def test_a_departed_peer_loses_its_chain_sets_and_counters() -> None:
    table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
    desired = render_table(plan(base=before_base_without("10.2.3.2")), Family.IPV4)
    script = table_script(desired, table)
    assert script is not None
    assert "delete chain ip anycast_rescue from_10_2_3_2" in script
    assert "delete set ip anycast_rescue owner_10_2_3_2" in script
    assert "delete set ip anycast_rescue fed_10_2_3_2" in script
    for kind in ("fwd", "rx", "bad", "fbtx", "fbrx"):
        assert f"delete counter ip anycast_rescue {kind}_10_2_3_2" in script
    assert "delete set ip anycast_rescue owner_10_2_2_2" not in script


def test_a_changed_timeout_recreates_that_set_only() -> None:
    table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
    desired = render_table(plan("  learn_timeout: 9\n"), Family.IPV4)
    script = table_script(desired, table) or ""
    deleted = [line for line in script.splitlines() if line.startswith("delete set")]
    assert deleted == [
        "delete set ip anycast_rescue owner_10_2_2_2",
        "delete set ip anycast_rescue owner_10_2_3_2",
    ]


def test_removal_script_deletes_the_tables() -> None:
    assert removal_script([Family.IPV4, Family.IPV6]) == (
        "delete table ip anycast_rescue\ndelete table ip6 anycast_rescue\n"
    )
    # Removing everything also removes the directory's netdev table, present or not.
    assert removal_script([Family.IPV4], egress=True) == (
        "delete table ip anycast_rescue\n"
        "table netdev anycast_rescue { }\ndelete table netdev anycast_rescue\n"
    )


class TestRegistrationsFollowTheBucketMap:
    """``registered`` is only valid for the directory member each flow was registered
    with: a bucket map change must empty it (issue 17: moved buckets lost registrations
    for up to register_interval), and nothing else may lose its flows."""

    KEPT = (
        "owner_10_2_2_2",
        "owner_10_2_3_2",
        "fed_10_2_2_2",
        "probation",
        "rescuing",
        "asked",
        "queried",
        "dir_10_2_2_2",
        "dir_10_2_3_2",
        "blind_src",
        "icmp_src",
    )

    def test_a_member_that_moves_buckets_empties_registered_in_the_same_transaction(
        self,
    ) -> None:
        table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
        desired = render_table(plan(base=before_base_with("10.2.4.2")), Family.IPV4)
        script = table_script(desired, table)
        assert script is not None
        deleted = [line for line in script.splitlines() if line.startswith("delete set")]
        assert deleted == ["delete set ip anycast_rescue registered"]
        # Declared again in the same ``nft -f``, after the flush of every rule.
        assert script.index("flush table") < script.index("delete set")
        assert "set registered {" in script[script.index("delete set") :]
        for name in self.KEPT:
            assert f"delete set ip anycast_rescue {name}\n" not in script
            assert f"flush set ip anycast_rescue {name}\n" not in script

    def test_a_departed_member_moves_its_buckets_too(self) -> None:
        table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
        desired = render_table(plan(base=before_base_without("10.2.3.2")), Family.IPV4)
        assert "delete set ip anycast_rescue registered\n" in (table_script(desired, table) or "")

    def test_a_change_that_keeps_the_bucket_map_keeps_the_registrations(self) -> None:
        table = parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))
        for extra in ("  learn_timeout: 9\n", "  directory: {answer_timeout: 2}\n"):
            script = table_script(render_table(plan(extra), Family.IPV4), table) or ""
            assert "registered" not in script.split("table ip anycast_rescue {")[0], extra

    def test_both_families_name_the_same_map_and_every_member_derives_it(self) -> None:
        """Every owner's ``registered`` is emptied by the same membership change."""

        def comment(p: RescuePlan, family: Family) -> str | None:
            sets = {s.name: s for s in render_table(p, family).shape.sets}
            return sets["registered"].comment

        mine = comment(plan(), Family.IPV4)
        assert mine is not None
        assert mine.startswith("bucket map ")
        assert comment(plan(), Family.IPV6) == mine
        assert comment(plan(local="10.2.2.2"), Family.IPV4) == mine
        assert comment(plan(base=before_base_with("10.2.4.2")), Family.IPV4) != mine
        buckets = plan("  directory: {buckets: 512}\n")
        assert comment(buckets, Family.IPV4) != mine


class TestRegistrationsForgotten:
    """The apply that empties ``registered`` says so, so the shell can empty it once more
    ``reregister_after`` later (``rescue.reregistration``)."""

    def installed(self) -> InstalledTable:
        return parse_table(Family.IPV4, json.loads(FIXTURE.read_text()))

    def test_a_bucket_map_change_forgets_them(self) -> None:
        for base in (before_base_with("10.2.4.2"), before_base_without("10.2.3.2")):
            assert forgets_registrations(
                table_shape(plan(base=base), Family.IPV4), self.installed()
            )

    def test_a_change_that_keeps_the_map_does_not(self) -> None:
        for extra in ("", "  learn_timeout: 9\n", "  directory: {reregister_after: 2}\n"):
            assert not forgets_registrations(
                table_shape(plan(extra), Family.IPV4), self.installed()
            )

    def test_nothing_was_registered_in_a_table_written_whole_or_without_the_set(self) -> None:
        desired = table_shape(plan(base=before_base_with("10.2.4.2")), Family.IPV4)
        assert not forgets_registrations(desired, None)
        table = self.installed()
        sets = {name: s for name, s in table.sets.items() if name != "registered"}
        assert not forgets_registrations(desired, replace(table, sets=sets))

    def test_turning_the_directory_off_leaves_nothing_to_register_again(self) -> None:
        off = table_shape(plan("  directory: {enabled: false}\n"), Family.IPV4)
        assert not forgets_registrations(off, self.installed())

    def test_the_second_emptying_flushes_that_set_alone(self) -> None:
        assert registrations_script(Family.IPV6) == "flush set ip6 anycast_rescue registered\n"


class TestEgressTable:
    """The flow directory's netdev table is checked and repaired on its own."""

    def test_its_rule_carries_the_underlay_tables_marker(self) -> None:
        desired = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 7})
        assert parse_egress(json.loads(EGRESS_FIXTURE.read_text())) == desired.marker
        assert desired.egress.startswith("table netdev anycast_rescue { }\n")
        assert desired.text.endswith(desired.egress)
        assert render_table(plan(), Family.IPV6).egress == ""

    def test_a_current_table_is_left_alone(self) -> None:
        desired = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 7})
        assert egress_script(desired, desired.marker) is None

    def test_a_missing_stale_or_unmarked_table_is_written_back_whole(self) -> None:
        desired = render_table(plan(), Family.IPV4)
        warm = render_table(plan(), Family.IPV4, mode=RenderMode.WARM)
        for installed in (None, "", warm.marker):
            assert egress_script(desired, installed) == desired.egress

    def test_a_plan_without_the_directory_deletes_a_leftover_table(self) -> None:
        off = render_table(plan("  directory: {enabled: false}\n"), Family.IPV4)
        assert off.egress == ""
        assert egress_script(off, "anything") == "delete table netdev anycast_rescue\n"
        assert egress_script(off, None) is None


def before_base_with(member: str) -> str:
    from tests.unit.rescue.plans import BASE

    return BASE.replace("10.2.2.2]", f"10.2.2.2, {member}]")


def before_base_without(member: str) -> str:
    from tests.unit.rescue.plans import BASE

    return BASE.replace(f"{member}, ", "").replace(f", {member}", "")
