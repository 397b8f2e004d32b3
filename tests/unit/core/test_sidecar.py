"""The decision core, driven input by input, synchronously: no loop, no processes."""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar

import pytest
from structlog.testing import capture_logs

from anycast_announcer.checks import ProbeCategory, ProbeResult
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    AddressChanged,
    ConfigLoaded,
    ConfigRejected,
    ConnectionsCounted,
    DrainFileChanged,
    DrainHookFinished,
    DrainRequested,
    ProbeCompleted,
    ServiceFailed,
    SessionChanged,
    UndrainRequested,
)
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.routes import RouteKey
from anycast_announcer.status import ExabgpStatus
from tests.unit.core.helpers import BASE, PEER, PREFIX, WALL_OFFSET, Harness, at, config

EXABGP = ExabgpStatus(
    pid=1, running=True, connected=True, restarts=0, routes_acknowledged=0, routes_desired=0
)
STATE_FILE = {"drain": {**BASE["drain"], "state_file": "/var/lib/x/drain.json"}}


def replies(harness: Harness, request: int) -> list[fx.Reply]:
    return [reply for reply in harness.of_type(fx.Reply) if reply.request == request]


class TestStart:
    def test_starts_with_probes_scheduled_and_everything_withdrawn(self) -> None:
        """The first step schedules every probe and hands out an empty route set."""
        harness = Harness()
        (schedule,) = harness.of_type(fx.ScheduleProbes)
        assert [service.name for service in schedule.services] == ["web"]
        assert harness.of_type(fx.SyncRoutes) == [fx.SyncRoutes({})]
        assert harness.core.decisions[PREFIX].state == "withdrawn"

    def test_never_reads_a_clock(self) -> None:
        """Status times are the instants given in, nothing else."""
        harness = Harness(now=5.0)
        status = harness.core.status(at(65.0), EXABGP)
        assert status.started_at == WALL_OFFSET + 5.0
        assert status.uptime == 60.0


class TestDecisions:
    def test_announces_after_rise_and_withdraws_after_fall(self) -> None:
        harness = Harness()
        harness.healthy()
        assert list(harness.routes) == [RouteKey(PEER, PREFIX)]
        harness.probe(False, 1.0)
        assert harness.routes == {}
        assert harness.core.decisions[PREFIX].reason == "service web down (probe: connect refused)"

    def test_an_unchanged_result_produces_no_route_effect(self) -> None:
        """Nearly every probe result changes nothing, and the driver hears nothing."""
        harness = Harness()
        harness.healthy()
        before = len(harness.of_type(fx.SyncRoutes))
        harness.probe(True, 1.0, times=5)
        assert len(harness.of_type(fx.SyncRoutes)) == before

    def test_session_down_removes_its_routes(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(SessionChanged(PEER, False, "hold timer expired"), 1.0)
        assert harness.routes == {}
        peer = harness.core.status(at(2.0), EXABGP).peers[0]
        assert (peer.state, peer.last_change_reason) == ("down", "hold timer expired")
        assert peer.last_change_at == WALL_OFFSET + 1.0

    def test_address_leaving_its_interface_withdraws(self) -> None:
        harness = Harness()
        harness.healthy()
        address = ipaddress.ip_address("10.255.0.1")
        harness.feed(AddressChanged("lo", address, False), 1.0)
        assert harness.routes == {}
        assert harness.core.decisions[PREFIX].reason == "address 10.255.0.1 not on lo"

    def test_an_address_on_another_interface_is_not_ours(self) -> None:
        harness = Harness()
        address = ipaddress.ip_address("10.255.0.1")
        assert harness.feed(AddressChanged("eth0", address, True), 0.0) == []

    def test_flapping_service_gets_dampened_then_released(self) -> None:
        """Three health withdrawals in quick succession keep the prefix out ~30 s."""
        harness = Harness()
        harness.healthy()
        for flap in range(3):
            harness.probe(False, 1.0 + flap)
            harness.probe(True, 1.5 + flap)
        assert harness.routes == {}
        assert harness.core.decisions[PREFIX].state == "dampened"
        deadline = harness.core.get_timer()
        assert deadline is not None
        assert 25 < deadline < 40
        harness.tick(deadline)
        assert list(harness.routes) == [RouteKey(PEER, PREFIX)]

    def test_metric_effects_report_each_change_once(self) -> None:
        harness = Harness()
        harness.healthy()
        assert harness.of_type(fx.ServiceChanged) == [
            fx.ServiceChanged("web", True, "probe: connected")
        ]
        # Every configured session is reported down at start, so "never came up" shows.
        assert harness.of_type(fx.PeerChanged) == [
            fx.PeerChanged(PEER, False, "not established yet"),
            fx.PeerChanged(PEER, True, "up"),
        ]
        # Each change carries its reason, for the history.
        assert [(e.state, e.announced, e.reason) for e in harness.of_type(fx.PrefixChanged)] == [
            ("withdrawn", False, "service web unknown"),
            ("announced", True, "services up"),
        ]
        assert len(harness.of_type(fx.ProbeRecorded)) == 2

    def test_state_changes_are_logged_with_stable_names(self) -> None:
        harness = Harness()
        with capture_logs() as logs:
            harness.healthy()
        events = [entry["event"] for entry in logs]
        assert "service_state_changed" in events
        changed = next(e for e in logs if e["event"] == "prefix_state_changed")
        assert (changed["prefix"], changed["old"], changed["new"]) == (
            PREFIX,
            "withdrawn",
            "announced",
        )

    def test_a_probe_of_a_removed_service_is_ignored(self) -> None:
        harness = Harness()
        harness.probe(True, 0.0, service="gone")
        assert harness.of_type(fx.ProbeRecorded) == []


class TestDrain:
    def test_drain_sequence(self) -> None:
        """Route unchanged while connections remain, then 65535:0, then gone, then back."""
        harness = Harness()
        harness.healthy()
        normal = dict(harness.routes)
        harness.feed(DrainRequested(1, None, "maintenance"), 10.0)
        (reply,) = replies(harness, 1)
        assert reply.result.ok
        assert reply.result.prefixes == (PREFIX,)
        assert harness.routes == normal
        assert harness.workers == {PREFIX}
        harness.feed(ConnectionsCounted(PREFIX, 4), 11.0)
        assert harness.routes == normal
        assert harness.core.status(at(11.0), EXABGP).prefixes[0].established_connections == 4
        harness.feed(ConnectionsCounted(PREFIX, 0), 12.0)
        (route,) = harness.routes.values()
        assert "65535:0" in route.communities
        assert harness.workers == set()
        assert harness.core.get_timer() == 17.0
        harness.tick(17.0)
        assert harness.routes == {}
        prefix = harness.core.status(at(17.0), EXABGP).prefixes[0]
        assert (prefix.drain_phase, prefix.drain_origin) == ("withdrawn", "operator")
        harness.feed(UndrainRequested(2, None), 20.0)
        assert replies(harness, 2)[0].result.ok
        assert harness.routes == normal

    def test_drain_phases_are_reported_with_wall_clock_times(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(DrainRequested(1, None, "maintenance"), 10.0)
        assert harness.of_type(fx.DrainPhaseChanged)[-1] == fx.DrainPhaseChanged(
            PREFIX, "waiting_connections", WALL_OFFSET + 10.0
        )

    def test_hook_runs_first_then_connections_are_counted(self) -> None:
        data = {**BASE, "drain": {**BASE["drain"], "hook": {"type": "command", "argv": ["x"]}}}
        harness = Harness(data)
        harness.healthy()
        harness.feed(DrainRequested(1, (PREFIX,), "x"), 1.0)
        (start,) = harness.of_type(fx.StartDrainWorker)
        assert (start.hook is not None, start.address, start.ports) == (True, "10.255.0.1", (8080,))
        assert harness.core.status(at(1.0), EXABGP).prefixes[0].drain_phase == "hook"
        harness.feed(DrainHookFinished(PREFIX, False, "exit status 1"), 2.0)
        assert harness.core.status(at(2.0), EXABGP).prefixes[0].drain_phase == (
            "waiting_connections"
        )

    def test_unknown_prefix_is_refused(self) -> None:
        harness = Harness()
        harness.feed(DrainRequested(7, ("10.9.9.9/32",), "x"), 0.0)
        (reply,) = replies(harness, 7)
        assert not reply.result.ok
        assert reply.result.message == "not a configured prefix: 10.9.9.9/32"

    def test_operator_drains_are_persisted_with_their_reason_and_wall_time(self) -> None:
        harness = Harness({**BASE, **STATE_FILE})
        harness.feed(DrainRequested(1, None, "maintenance"), 3.0)
        (persist,) = harness.of_type(fx.PersistDrains)
        assert persist.path == "/var/lib/x/drain.json"
        assert persist.drains == (PersistedDrain(PREFIX, "maintenance", WALL_OFFSET + 3.0),)

    def test_a_restored_drain_starts_withdrawn(self) -> None:
        """A drain survives a restart: the new core starts drained."""
        restored = [PersistedDrain(PREFIX, "maintenance", 1.0)]
        harness = Harness({**BASE, **STATE_FILE}, restored=restored)
        harness.healthy()
        assert harness.routes == {}
        assert harness.core.decisions[PREFIX].reason == "drained: maintenance"
        assert harness.core.status(at(1.0), EXABGP).prefixes[0].drain_origin == "restored"

    def test_a_restored_drain_of_an_unconfigured_prefix_is_skipped(self) -> None:
        restored = [PersistedDrain("10.9.9.9/32", "old", 1.0)]
        with capture_logs() as logs:
            Harness(restored=restored)
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["drain_not_restored"]


class TestDrainFile:
    """The drain file ends only the drains it started (issue 9's drain-file bug)."""

    def test_drain_file_drains_everything_and_is_not_persisted(self) -> None:
        harness = Harness({**BASE, **STATE_FILE})
        harness.healthy()
        harness.feed(DrainFileChanged(True), 1.0)
        status = harness.core.status(at(1.0), EXABGP).prefixes[0]
        assert (status.drain_phase, status.drain_origin) == ("waiting_connections", "drain_file")
        assert harness.of_type(fx.PersistDrains)[-1].drains == ()

    def test_removing_the_file_keeps_an_operators_drain(self) -> None:
        """Regression: the file's disappearance used to end every drain."""
        two = {**BASE, **STATE_FILE, "prefixes": [*BASE["prefixes"], _second_prefix()]}
        harness = Harness(two)
        harness.feed(DrainRequested(1, (PREFIX,), "operator maintenance"), 0.0)
        harness.feed(DrainFileChanged(True), 1.0)
        harness.feed(DrainFileChanged(False), 2.0)
        phases = {p.prefix: p.drain_phase for p in harness.core.status(at(2.0), EXABGP).prefixes}
        assert phases == {PREFIX: "waiting_connections", "10.255.0.2/32": "none"}
        assert harness.of_type(fx.PersistDrains)[-1].drains == (
            PersistedDrain(PREFIX, "operator maintenance", WALL_OFFSET),
        )

    def test_removing_the_file_keeps_a_restored_drain(self) -> None:
        restored = [PersistedDrain(PREFIX, "maintenance", 1.0)]
        harness = Harness({**BASE, **STATE_FILE}, restored=restored)
        harness.feed(DrainFileChanged(True), 1.0)
        harness.feed(DrainFileChanged(False), 2.0)
        assert harness.core.status(at(2.0), EXABGP).prefixes[0].drain_phase == "withdrawn"

    def test_an_operator_reason_equal_to_the_files_is_still_persisted(self) -> None:
        """Origin is data: typing the file's reason text no longer loses the drain."""
        harness = Harness({**BASE, **STATE_FILE})
        harness.feed(DrainRequested(1, None, "drain file present"), 0.0)
        assert harness.of_type(fx.PersistDrains)[-1].drains == (
            PersistedDrain(PREFIX, "drain file present", WALL_OFFSET),
        )


class TestReload:
    def test_bandwidth_change_reannounces_without_touching_bgp(self) -> None:
        harness = Harness()
        harness.healthy()
        changed = {**BASE, "prefixes": [{**BASE["prefixes"][0], "bandwidth_mbps": 1000}]}
        harness.feed(ConfigLoaded(config(changed), 3), 5.0)
        (reply,) = replies(harness, 3)
        assert (reply.result.ok, reply.result.message) == (True, "reloaded")
        (route,) = harness.routes.values()
        assert route.bandwidth_bps == 1e9
        assert harness.of_type(fx.RestartExabgp) == []
        assert harness.core.status(at(5.0), EXABGP).services[0].state == "up"  # no flap

    def test_unchanged_file_says_so(self) -> None:
        harness = Harness()
        harness.feed(ConfigLoaded(config(), 3), 5.0)
        assert replies(harness, 3)[0].result.message == "configuration unchanged"
        assert harness.of_type(fx.ReloadFinished) == [fx.ReloadFinished(True, WALL_OFFSET + 5)]

    def test_rejected_file_changes_nothing_and_is_shown(self) -> None:
        harness = Harness()
        harness.healthy()
        before = dict(harness.routes)
        harness.feed(ConfigRejected("config.yaml: bgp: missing", 4), 5.0)
        (reply,) = replies(harness, 4)
        assert not reply.result.ok
        assert reply.result.message.endswith("config.yaml: bgp: missing")
        assert harness.routes == before
        status = harness.core.status(at(5.0), EXABGP)
        assert status.last_reload_error == "config.yaml: bgp: missing"
        assert harness.of_type(fx.ReloadFinished) == [fx.ReloadFinished(False, WALL_OFFSET + 5)]

    def test_a_good_reload_clears_the_last_error(self) -> None:
        harness = Harness()
        harness.feed(ConfigRejected("broken", None), 1.0)
        harness.feed(ConfigLoaded(config(), None), 2.0)
        assert harness.core.status(at(2.0), EXABGP).last_reload_error is None
        assert harness.of_type(fx.Reply) == []  # SIGHUP reloads answer nobody

    def test_added_prefix_leaves_the_others_alone(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(
            ConfigLoaded(config({**BASE, "prefixes": [*BASE["prefixes"], _second_prefix()]}), 1),
            5.0,
        )
        harness.feed(AddressChanged("lo", ipaddress.ip_address("10.255.0.2"), True), 6.0)
        assert set(harness.routes) == {
            RouteKey(PEER, PREFIX),
            RouteKey(PEER, "10.255.0.2/32"),
        }

    def test_bgp_change_restarts_exabgp(self) -> None:
        harness = Harness()
        harness.feed(
            ConfigLoaded(config({**BASE, "bgp": {**BASE["bgp"], "hold_time": 30}}), 1), 5.0
        )
        assert replies(harness, 1)[0].result.message == "reloaded; bgp changed: ExaBGP restarted"
        assert [effect.bgp.hold_time for effect in harness.of_type(fx.RestartExabgp)] == [30]

    def test_removed_names_are_reported_so_their_series_go(self) -> None:
        harness = Harness({**BASE, "prefixes": [*BASE["prefixes"], _second_prefix()]})
        harness.feed(ConfigLoaded(config(), 1), 5.0)
        assert harness.of_type(fx.Unconfigured) == [
            fx.Unconfigured(services=(), prefixes=("10.255.0.2/32",), peers=())
        ]

    def test_service_change_reschedules_probes_and_logging_change_reconfigures(self) -> None:
        harness = Harness()
        services = [{**BASE["services"][0], "interval": 2.0}]
        changed = {**BASE, "services": services, "logging": {"level": "debug"}}
        harness.feed(ConfigLoaded(config(changed), 1), 5.0)
        schedules = harness.of_type(fx.ScheduleProbes)
        assert [s.services[0].interval for s in schedules] == [1.0, 2.0]
        assert [e.logging.level for e in harness.of_type(fx.ConfigureLogging)] == ["debug"]


class TestDetection:
    """Kernel and system events that prove a service gone (issue 11)."""

    def test_listener_closed_withdraws_at_once(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(ServiceFailed("web", "listener", "listener closed: 10.255.0.1:8080"), 1.0)
        assert harness.routes == {}
        decision = harness.core.decisions[PREFIX]
        assert decision.reason == "service web down (listener closed: 10.255.0.1:8080)"
        assert harness.of_type(fx.Detected)[-1] == fx.Detected("listener", withdrew=True)

    def test_recovery_still_needs_rise(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(ServiceFailed("web", "process", "process exited: pid 7"), 1.0)
        harness.probe(True, 1.1, times=1)
        assert harness.routes == {}
        harness.probe(True, 1.2, times=1)
        assert list(harness.routes) == [RouteKey(PEER, PREFIX)]

    def test_an_event_about_a_service_already_down_is_counted_as_ignored(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.probe(False, 1.0)
        harness.feed(ServiceFailed("web", "unit", "unit failed"), 2.0)
        assert harness.of_type(fx.Detected)[-1] == fx.Detected("unit", withdrew=False)
        status = harness.core.status(at(2.0), EXABGP).services[0]
        assert status.last_change_reason == "probe: connect refused"

    def test_dampening_still_applies_to_event_withdrawals(self) -> None:
        harness = Harness()
        harness.healthy()
        for flap in range(3):
            harness.feed(ServiceFailed("web", "listener", "listener closed"), 1.0 + flap)
            harness.probe(True, 1.5 + flap)
        assert harness.core.decisions[PREFIX].state == "dampened"

    def test_an_address_removed_is_a_detection(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(AddressChanged("lo", ipaddress.ip_address("10.255.0.1"), False), 1.0)
        assert harness.of_type(fx.Detected) == [fx.Detected("address", withdrew=True)]

    def test_probes_speed_up_while_a_streak_changes_the_state(self) -> None:
        """After a first failure of a healthy service, and until the state settles."""
        harness = Harness()
        harness.healthy()  # the rise streak made it fast, reaching UP made it slow again
        assert [e.fast for e in harness.of_type(fx.ProbeCadence)] == [True, False]
        harness.probe(False, 1.0, times=1)
        assert harness.of_type(fx.ProbeCadence)[-1] == fx.ProbeCadence("web", True)
        harness.probe(False, 1.1, times=1)
        assert harness.of_type(fx.ProbeCadence)[-1] == fx.ProbeCadence("web", False)


class TestSidecarFault:
    """Our own shortage (EMFILE, ENOMEM...) is no evidence about the service (issue 10)."""

    def shortage(self, harness: Harness, now: float, times: int = 3) -> None:
        result = ProbeResult(
            False,
            0.0,
            "sidecar cannot probe: too many open files (EMFILE)",
            ProbeCategory.SIDECAR,
            resource="emfile",
        )
        for _ in range(times):
            harness.feed(ProbeCompleted("web", result), now)

    def test_keeps_the_last_state_and_the_route(self) -> None:
        harness = Harness()
        harness.healthy()
        before = dict(harness.routes)
        self.shortage(harness, 1.0)
        assert harness.routes == before
        status = harness.core.status(at(1.0), EXABGP)
        assert status.services[0].state == "up"
        assert status.services[0].consecutive_failures == 0

    def test_reports_the_fault_in_status_readiness_logs_and_metrics(self) -> None:
        harness = Harness()
        harness.healthy()
        with capture_logs() as logs:
            self.shortage(harness, 1.0)
        fault = harness.core.status(at(1.0), EXABGP).sidecar_fault
        assert fault is not None
        assert (fault.kind, fault.at) == ("emfile", WALL_OFFSET + 1.0)
        assert not harness.core.ready(exabgp_connected=True)
        assert [e["event"] for e in logs if e["log_level"] == "error"] == ["sidecar_fault"]
        assert [e.kind for e in harness.of_type(fx.SidecarFaulted)] == ["emfile"] * 3

    def test_clears_when_the_probe_runs_again(self) -> None:
        harness = Harness()
        harness.healthy()
        self.shortage(harness, 1.0)
        harness.probe(True, 2.0, times=1)
        assert harness.core.status(at(2.0), EXABGP).sidecar_fault is None
        assert harness.core.ready(exabgp_connected=True)

    def test_a_real_failure_after_the_fault_still_withdraws(self) -> None:
        harness = Harness()
        harness.healthy()
        self.shortage(harness, 1.0)
        harness.probe(False, 2.0)
        assert harness.routes == {}


class TestRescue:
    """The core asks for the flow-rescue data path; the shell applies it as a diff."""

    RESCUE: ClassVar[dict[str, Any]] = {"members": ["10.0.1.2", "10.0.2.2"]}

    def test_start_asks_for_it_first(self) -> None:
        harness = Harness({**BASE, "rescue": self.RESCUE})
        assert isinstance(harness.effects[0], fx.SyncRescue)

    def test_not_configured_not_asked(self) -> None:
        assert Harness().of_type(fx.SyncRescue) == []

    def test_a_changed_group_or_prefix_set_is_synced_again(self) -> None:
        harness = Harness({**BASE, "rescue": self.RESCUE})
        grown = {"members": [*self.RESCUE["members"], "10.0.3.2"]}
        harness.feed(ConfigLoaded(config({**BASE, "rescue": grown}), 1), 1.0)
        more = {**BASE, "rescue": grown, "prefixes": [*BASE["prefixes"], _second_prefix()]}
        harness.feed(ConfigLoaded(config(more), 2), 2.0)
        harness.feed(ConfigLoaded(config({**more, "logging": {"level": "debug"}}), 3), 3.0)
        synced = harness.of_type(fx.SyncRescue)
        assert [len(e.config.rescue.members) for e in synced if e.config.rescue] == [2, 3, 3]

    def test_a_removed_section_leaves_the_data_path_installed(self) -> None:
        harness = Harness({**BASE, "rescue": self.RESCUE})
        with capture_logs() as logs:
            harness.feed(ConfigLoaded(config(), 1), 1.0)
        assert harness.of_type(fx.RescueUnconfigured) == [fx.RescueUnconfigured()]
        assert "rescue_unconfigured" in [e["event"] for e in logs]


class TestReadiness:
    def test_ready_once_every_service_was_probed_and_exabgp_is_connected(self) -> None:
        harness = Harness()
        assert not harness.core.ready(exabgp_connected=True)
        harness.probe(False, 0.0, times=1)
        assert harness.core.ready(exabgp_connected=True)
        assert not harness.core.ready(exabgp_connected=False)


class TestShutdown:
    def test_withdraws_everything_and_stops_workers(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.feed(DrainRequested(1, None, "x"), 1.0)
        assert harness.workers
        harness.take(harness.core.shutdown(at(2.0)))
        assert harness.routes == {}
        assert harness.workers == set()
        assert harness.core.decisions[PREFIX].reason == "shutting down"


def _second_prefix() -> dict[str, Any]:
    return {"prefix": "10.255.0.2/32", "services": ["web"], "bandwidth_mbps": 10000}


@pytest.mark.parametrize("now", [0.0, 1e9])
def test_dampening_penalty_is_shown_rounded(now: float) -> None:
    harness = Harness(now=now)
    harness.healthy(now)
    harness.probe(False, now + 1)
    penalty = harness.core.status(at(now + 1), EXABGP).prefixes[0].dampening_penalty
    assert penalty == 1000.0
