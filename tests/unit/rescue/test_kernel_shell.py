"""The kernel shell (``rescue.kernel``) against fakes of nft, netlink and conntrack."""

from __future__ import annotations

import errno
import ipaddress
import subprocess
from pathlib import Path

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from anycast_announcer.rescue.kernel import RescueError
from anycast_announcer.rescue.model import Family
from anycast_announcer.rescue.render import RenderMode, render_table
from anycast_announcer.rescue.takeover import CtEntry, Flow
from tests.unit.rescue.fakes import FakeHost
from tests.unit.rescue.plans import BASE, plan

A = ipaddress.ip_address("10.255.0.1")
CLIENT = ipaddress.ip_address("10.3.0.2")


def _entry(port: int) -> CtEntry:
    return CtEntry(CLIENT, port, A, 8080)


def _flow(port: int) -> Flow:
    return Flow(A, 8080, CLIENT, port)


class TestFirstInstall:
    def test_installs_full_tables_after_a_take_over(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        host.sockets.held = [_flow(1)]
        report = host.kernel().apply(plan())
        assert report.took_over == ("ip", "ip6")
        assert report.adopted == 1
        assert {m.split()[3] for m in host.nft.tables.values()} == {"full"}

    def test_devices_go_up_only_once_their_rules_are_loaded(self, tmp_path: Path) -> None:
        """Up without rules, a device would hand a peer's copy to the local stack, which
        resets the connection (seen in the lab when peers registered flows with a member
        in the middle of its install)."""
        host = FakeHost(tmp_path)
        links_at_first_write: list[int] = []

        def note(script: str) -> None:
            if not links_at_first_write:
                links_at_first_write.append(host.ipr.calls.count(("link", "set")))

        host.nft.fail = lambda script: note(script)
        host.kernel().apply(plan())
        # Two devices: created and given their MAC and MTU (one "set" each) before the
        # first table; brought up (one more "set" each) after it.
        assert links_at_first_write == [2]
        assert host.ipr.calls.count(("link", "set")) == 4
        assert host.ipr.calls[-2:] == [("link", "set"), ("link", "set")]

    @pytest.mark.parametrize(
        "error",
        [
            NetlinkError(errno.EPERM, "Operation not permitted"),
            OSError(errno.EMFILE, "Too many open files"),
        ],
        ids=["netlink", "oserror"],
    )
    def test_a_conntrack_failure_rolls_back_as_rescue_error(
        self, tmp_path: Path, error: BaseException
    ) -> None:
        host = FakeHost(tmp_path)
        host.conntrack.dump_error = error
        with pytest.raises(RescueError, match="applying the rescue plan"):
            host.kernel().apply(plan())
        assert host.nft.tables == {}  # the warm tables written before were removed

    def test_a_socket_diag_failure_rolls_back(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)

        def broken(family: Family) -> tuple[list[Flow], list[Flow]]:
            raise NetlinkError(errno.ENOENT, "sock_diag")

        kernel = host.kernel()
        kernel.sockets = broken
        with pytest.raises(RescueError):
            kernel.apply(plan())
        assert host.nft.tables == {}

    def test_an_nft_timeout_rolls_back(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        host.nft.fail = lambda script: (
            subprocess.TimeoutExpired("nft", 60) if " full " in script else None
        )
        with pytest.raises(RescueError, match="TimeoutExpired"):
            host.kernel().apply(plan())
        assert host.nft.tables == {}


class TestCrashBetweenWarmAndFull:
    def test_a_warm_table_found_at_start_is_taken_over_again(self, tmp_path: Path) -> None:
        """A kill between the two writes leaves warm tables: the next start must not
        count them as installed, or conntrack never learns the idle connections."""
        host = FakeHost(tmp_path)
        wanted = plan()
        for family in wanted.families:
            warm = render_table(wanted, family, mode=RenderMode.WARM, device_indexes={})
            host.nft.tables[family.value] = warm.marker
        host.sockets.held = [_flow(1)]
        report = host.kernel().apply(wanted)
        assert report.took_over == ("ip", "ip6")
        assert _entry(1) in host.conntrack.entries
        assert all(" full " in marker for marker in host.nft.tables.values())

    def test_a_full_table_is_not_taken_over_again(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        host.conntrack.commands.clear()
        report = kernel.apply(plan())
        assert report.took_over == ()
        assert host.conntrack.commands == []


class TestTakeOverStates:
    def test_half_closed_and_half_open_connections_keep_their_entries(self, tmp_path: Path) -> None:
        """CLOSE_WAIT, FIN_WAIT and SYN_RECV sockets are held: their entries stay."""
        host = FakeHost(tmp_path)
        host.conntrack.entries = {_entry(1), _entry(2), _entry(3)}
        host.sockets.held = [_flow(1)]  # e.g. CLOSE_WAIT, as host_sockets reports it
        host.sockets.lingering = [_flow(2)]  # TIME_WAIT
        host.kernel().apply(plan())
        assert host.conntrack.entries == {_entry(1), _entry(2)}
        assert ("del", str(_entry(3))) in host.conntrack.commands


def test_host_socket_states_held_include_closing_and_opening() -> None:
    from anycast_announcer.rescue import kernel

    # ESTABLISHED, SYN_RECV, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING
    assert set(kernel._TCP_HELD_STATES) == {1, 3, 4, 5, 8, 9, 11}
    assert kernel._TCP_TIME_WAIT == 6


def test_remove_reports_errors_as_rescue_error(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    kernel = host.kernel()
    kernel.apply(plan())
    host.nft.fail = lambda script: subprocess.TimeoutExpired("nft", 60)
    with pytest.raises(RescueError, match="removing"):
        kernel.remove()


def test_a_repair_puts_the_full_table_back_without_a_warm_phase(tmp_path: Path) -> None:
    """Rescued flows must not meet a warm table (it hands them to the local stack)."""
    host = FakeHost(tmp_path)
    kernel = host.kernel()
    kernel.apply(plan())
    host.nft.tables.clear()  # flush ruleset
    host.nft.scripts.clear()
    host.sockets.held = [_flow(7)]
    report = kernel.apply(plan(), warm=False)
    assert report.tables_written == ("ip", "ip6")
    assert report.changed
    assert report.took_over == ("ip", "ip6")
    assert _entry(7) in host.conntrack.entries
    assert not any(" warm " in script for script in host.nft.scripts)


def test_restore_writes_deleted_tables_back_whole_then_takes_over(tmp_path: Path) -> None:
    host = FakeHost(tmp_path)
    kernel = host.kernel()
    kernel.apply(plan())
    host.nft.tables.pop("ip")
    host.nft.scripts.clear()
    host.sockets.held = [_flow(9)]
    report = kernel.restore(plan(), {"ip"})
    assert report.tables_written == ("ip",)
    assert " full " in host.nft.tables["ip"]
    # Replaced whole: a table that came back meanwhile would not be doubled.
    assert host.nft.scripts[0].startswith(
        "add table ip anycast_rescue\ndelete table ip anycast_rescue\n"
    )
    assert _entry(9) in host.conntrack.entries


class TestEgressTable:
    """The flow directory's netdev table: deleted or altered alone, it is drift, and
    the repair (or a restore after the watch saw it deleted) writes it back alone.
    (The fake finds no overlay device, so ``in_sync`` is never true here: what makes
    the netdev table drift is ``diff.egress_script``'s, tested in test_diff.)"""

    def test_deleted_alone_a_repair_writes_only_it(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        marker = host.nft.tables["netdev"]
        assert marker == host.nft.tables["ip"]
        host.nft.tables.pop("netdev")  # nft delete table netdev anycast_rescue
        host.nft.scripts.clear()
        report = kernel.apply(plan(), warm=False)
        assert report.tables_written == ("netdev",)
        assert host.nft.tables["netdev"] == marker
        assert [s.splitlines()[0] for s in host.nft.scripts] == ["table netdev anycast_rescue { }"]

    def test_an_altered_table_is_written_back(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        host.nft.tables["netdev"] = ""  # its rule replaced by someone else's
        assert kernel.apply(plan()).tables_written == ("netdev",)
        assert host.nft.tables["netdev"] == host.nft.tables["ip"]

    def test_restore_writes_it_alone_when_only_it_was_deleted(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        host.nft.tables.pop("netdev")
        host.nft.scripts.clear()
        report = kernel.restore(plan(), {"netdev"})
        assert report.tables_written == ("netdev",)
        assert host.nft.tables["netdev"] == host.nft.tables["ip"]
        assert len(host.nft.scripts) == 1

    def test_after_a_flushed_ruleset_it_comes_back_with_the_underlay_table(
        self, tmp_path: Path
    ) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        host.nft.tables.clear()
        host.nft.scripts.clear()
        report = kernel.restore(plan(), {"ip", "ip6", "netdev"})
        assert report.tables_written == ("ip", "ip6")
        assert len(host.nft.scripts) == 2  # no third write: ip's text carries it
        assert host.nft.tables["netdev"] == host.nft.tables["ip"]
        assert kernel.apply(plan(), warm=False).tables_written == ()

    def test_turning_the_directory_off_deletes_it(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        kernel.apply(plan("  directory: {enabled: false}\n"))
        assert "netdev" not in host.nft.tables
        assert kernel.read_installed().egress is None


class TestResetGuard:
    """The tc filter that drops unmarked resets from anycast addresses (see guard)."""

    GUARDED = "  fabric_interfaces: [eth1, eth2]\n"

    def test_goes_on_every_fabric_interface_after_the_tables(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        report = kernel.apply(plan(self.GUARDED))
        assert set(host.nft.guard) == {"eth1", "eth2"}
        assert host.nft.changes.index("tc filter replace eth1") > max(
            i for i, change in enumerate(host.nft.changes) if change == "nft -f"
        )
        assert "reset guard on eth1" in report.link_steps
        installed = kernel.read_installed()
        assert installed.as_json()["reset_guard"] == ["eth1", "eth2"]
        again = kernel.apply(plan(self.GUARDED))
        assert not [step for step in again.link_steps if "reset guard" in step]

    def test_a_lost_or_changed_guard_is_drift_and_is_put_back(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan(self.GUARDED))
        program = host.nft.guard.pop("eth2")
        assert "reset guard on eth2" in kernel.apply(plan(self.GUARDED)).link_steps
        assert host.nft.guard["eth2"] == program
        host.nft.guard["eth1"] = "1,6 0 0 0"
        assert "reset guard on eth1" in kernel.apply(plan(self.GUARDED)).link_steps
        assert host.nft.guard["eth1"] == program

    def test_follows_the_interfaces_and_the_prefixes(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan(self.GUARDED))
        before = host.nft.guard["eth1"]
        kernel.apply(plan("  fabric_interfaces: [eth1]\n"))
        assert set(host.nft.guard) == {"eth1"}
        assert host.nft.guard["eth1"] == before
        wider = BASE.replace("10.255.0.1/32", "10.255.0.0/24")
        kernel.apply(plan("  fabric_interfaces: [eth1]\n", base=wider))
        assert host.nft.guard["eth1"] != before

    def test_mark_zero_means_no_guard(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        host.kernel().apply(plan(self.GUARDED + "  reset_guard_mark: 0\n"))
        assert host.nft.guard == {}

    def test_remove_takes_the_guard_off_before_the_tables(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan(self.GUARDED))
        host.nft.changes.clear()
        assert kernel.remove().guard == ("eth1", "eth2")
        assert host.nft.guard == {}
        assert host.nft.changes == [
            "tc filter del eth1",
            "tc filter del eth2",
            "nft -f",
        ]


class TestForgetRegistrations:
    """The second emptying of ``registered`` (``rescue.reregistration``): that set alone,
    in each table that has it."""

    def test_empties_registered_in_each_family_and_nothing_else(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        tables = dict(host.nft.tables)
        host.nft.scripts.clear()
        assert kernel.forget_registrations(plan()) == ("ip", "ip6")
        assert host.nft.scripts == [
            "flush set ip anycast_rescue registered\n",
            "flush set ip6 anycast_rescue registered\n",
        ]
        assert host.nft.tables == tables

    def test_a_table_that_is_not_there_is_skipped(self, tmp_path: Path) -> None:
        """Deleted behind our back: it comes back with the set empty anyway."""
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        host.nft.tables.pop("ip")
        assert kernel.forget_registrations(plan()) == ("ip6",)

    def test_without_the_directory_there_is_nothing_to_empty(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        off = plan("  directory: {enabled: false}\n")
        kernel.apply(off)
        host.nft.scripts.clear()
        assert kernel.forget_registrations(off) == ()
        assert host.nft.scripts == []

    def test_another_failure_is_a_rescue_error(self, tmp_path: Path) -> None:
        host = FakeHost(tmp_path)
        kernel = host.kernel()
        kernel.apply(plan())
        host.nft.fail = lambda script: subprocess.TimeoutExpired(["nft"], 60)
        with pytest.raises(RescueError, match="forgetting the flow directory's registrations"):
            kernel.forget_registrations(plan())
