"""Edges of the decision core found in review (issue 20): reloads that add or remove
prefixes and services mid-drain, probe cadence across reloads, drain ports of http
checks, and the terminal state after ``shutdown``."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from structlog.testing import capture_logs

from anycast_announcer.core import CoreClosedError
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    AddressChanged,
    ConfigLoaded,
    DrainFileChanged,
    DrainRequested,
    ProbeCompleted,
)
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.results import ProbeResult
from anycast_announcer.status import ExabgpStatus
from tests.unit.core.helpers import BASE, PREFIX, Harness, at, config

EXABGP = ExabgpStatus(
    pid=1, running=True, connected=True, restarts=0, routes_acknowledged=0, routes_desired=0
)
SECOND = "10.255.0.2/32"
STATE_FILE = {"drain": {**BASE["drain"], "state_file": "/var/lib/x/drain.json"}}


def _two_prefixes(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    second = {"prefix": SECOND, "services": ["web"], "bandwidth_mbps": 10000}
    return {**BASE, **(extra or {}), "prefixes": [*BASE["prefixes"], second]}


def _phases(harness: Harness, now: float) -> dict[str, tuple[str, str | None]]:
    return {
        p.prefix: (p.drain_phase, p.drain_origin)
        for p in harness.core.status(at(now), EXABGP).prefixes
    }


class TestReloadWhileDraining:
    def test_a_prefix_added_while_the_drain_file_exists_is_drained(self) -> None:
        """Regression: the new prefix was announced next to the drained one."""
        harness = Harness()
        harness.healthy()
        harness.feed(DrainFileChanged(True), 1.0)
        harness.feed(ConfigLoaded(config(_two_prefixes()), 1), 2.0)
        harness.feed(AddressChanged("lo", ipaddress.ip_address("10.255.0.2"), True), 3.0)
        assert _phases(harness, 3.0)[SECOND] == ("withdrawn", "drain_file")  # never announced
        assert SECOND not in {key.prefix for key in harness.routes}

    def test_removing_a_prefix_mid_drain_stops_its_worker(self) -> None:
        """Regression: the worker went on counting connections forever."""
        harness = Harness(_two_prefixes())
        harness.healthy()
        harness.feed(DrainRequested(1, (SECOND,), "maintenance"), 1.0)
        assert harness.workers == {SECOND}
        harness.feed(ConfigLoaded(config(), 2), 2.0)
        assert harness.workers == set()
        assert harness.of_type(fx.StopDrainWorker)[-1] == fx.StopDrainWorker(SECOND)

    def test_removing_a_drained_prefix_rewrites_the_state_file(self) -> None:
        """Regression: re-added later, it came back drained after a restart."""
        harness = Harness(_two_prefixes(STATE_FILE))
        harness.feed(DrainRequested(1, (SECOND,), "maintenance"), 1.0)
        assert [d.prefix for d in harness.of_type(fx.PersistDrains)[-1].drains] == [SECOND]
        harness.feed(ConfigLoaded(config({**BASE, **STATE_FILE}), 2), 2.0)
        assert harness.of_type(fx.PersistDrains)[-1].drains == ()

    def test_a_restored_drain_of_an_unconfigured_prefix_leaves_the_state_file(self) -> None:
        """Found by the state machine: a restart without the prefix kept its drain in the
        file, so configuring the prefix again later brought it back drained."""
        restored = [PersistedDrain(SECOND, "maintenance", 1.0)]
        harness = Harness({**BASE, **STATE_FILE}, restored=restored)
        assert harness.of_type(fx.PersistDrains)[-1].drains == ()


class TestCadenceAcrossReloads:
    def test_a_reload_that_ends_a_streak_slows_the_probes_again(self) -> None:
        """Regression: the scheduler kept probing at the confirm interval."""
        harness = Harness()
        harness.healthy()
        harness.probe(False, 1.0, times=1)  # a first failure: fast
        assert harness.of_type(fx.ProbeCadence)[-1] == fx.ProbeCadence("web", True)
        services = [{**BASE["services"][0], "fall": 3}]  # hysteresis changed: streak reset
        harness.feed(ConfigLoaded(config({**BASE, "services": services}), 1), 2.0)
        assert harness.of_type(fx.ProbeCadence)[-1] == fx.ProbeCadence("web", False)

    def test_a_reload_that_keeps_the_streak_keeps_the_cadence(self) -> None:
        harness = Harness()
        harness.healthy()
        harness.probe(False, 1.0, times=1)
        services = [{**BASE["services"][0], "interval": 2.0}]
        harness.feed(ConfigLoaded(config({**BASE, "services": services}), 1), 2.0)
        # Still fast: the scheduler keeps its flag per service name across the new task.
        assert harness.of_type(fx.ProbeCadence)[-1] == fx.ProbeCadence("web", True)
        harness.probe(False, 2.1, times=1)
        assert harness.of_type(fx.ProbeCadence)[-1] == fx.ProbeCadence("web", False)


class TestDrainPorts:
    def test_http_and_https_check_ports_are_waited_for(self) -> None:
        """Regression: only tcp checks gave a drain its ports, so http ones drained at once."""
        services = [
            {"name": "web", "check": {"type": "http", "url": "http://127.0.0.1:8080/health"}},
            {"name": "api", "check": {"type": "https", "url": "https://[::1]/"}},
            {"name": "dns", "check": {"type": "tcp", "host": "127.0.0.1", "port": 53}},
        ]
        prefixes = [{"prefix": PREFIX, "services": ["web", "api", "dns"]}]
        harness = Harness({**BASE, "services": services, "prefixes": prefixes})
        harness.feed(DrainRequested(1, None, "maintenance"), 1.0)
        (start,) = harness.of_type(fx.StartDrainWorker)
        assert start.ports == (8080, 443, 53)

    def test_a_drain_without_ports_is_logged(self) -> None:
        services = [{"name": "web", "check": {"type": "command", "argv": ["true"]}}]
        harness = Harness({**BASE, "services": services})
        with capture_logs() as logs:
            harness.feed(DrainRequested(1, None, "maintenance"), 1.0)
        assert {"event": "drain_without_ports", "prefix": PREFIX, "log_level": "warning"} in [
            {k: entry[k] for k in ("event", "prefix", "log_level") if k in entry} for entry in logs
        ]


class TestTerminalState:
    def test_every_input_after_shutdown_is_refused(self) -> None:
        """Regression: a probe result after shutdown announced the route again."""
        harness = Harness()
        harness.healthy()
        harness.take(harness.core.shutdown(at(2.0)))
        result = ProbeResult(True, 0.001, "connected")
        with pytest.raises(CoreClosedError, match="shut down"):
            harness.core.handle(ProbeCompleted("web", result), at(3.0))
        with pytest.raises(CoreClosedError):
            harness.core.handle_timer(at(3.0))
        with pytest.raises(CoreClosedError):
            harness.core.start(at(3.0))
        assert harness.routes == {}
        assert harness.core.get_timer() is None

    def test_a_second_shutdown_has_nothing_left_to_do(self) -> None:
        harness = Harness()
        harness.take(harness.core.shutdown(at(1.0)))
        assert harness.core.shutdown(at(2.0)) == []

    def test_status_stays_readable_after_shutdown(self) -> None:
        harness = Harness()
        harness.take(harness.core.shutdown(at(1.0)))
        assert harness.core.status(at(2.0), EXABGP).prefixes[0].reason == "shutting down"
