"""The supervisor's decision step, driven input by input with fakes at its seams.

No processes and no sockets: a fake driver records the desired routes, inputs are fed
with explicit times. What crosses processes is proven in tests/integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from anycast_announcer.app import (
    AddressChange,
    ConnectionsCounted,
    ProbeOutcome,
    SessionChange,
    StartupError,
    Supervisor,
)
from anycast_announcer.checks import ProbeResult
from anycast_announcer.config import BgpConfig, Config, ExabgpConfig, load_config
from anycast_announcer.exabgp.driver import DriverSnapshot
from anycast_announcer.routes import Route, RouteKey


class FakeDriver:
    def __init__(self) -> None:
        self.desired: dict[RouteKey, Route] = {}
        self.reconfigured: list[BgpConfig] = []

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> None:
        self.desired = dict(routes)

    def reconfigure(self, bgp: BgpConfig, settings: ExabgpConfig) -> None:
        self.reconfigured.append(bgp)

    def snapshot(self) -> DriverSnapshot:
        return DriverSnapshot(None, 0, True, frozenset(), 0, len(self.desired))


class NoProbe:
    async def probe(self, check: Any, timeout: float) -> ProbeResult:
        raise AssertionError("these tests feed results themselves")


class AllPresent:
    async def present(self, interface: str, network: Any) -> bool:
        return True

    async def add(self, interface: str, network: Any) -> None: ...

    async def remove(self, interface: str, network: Any) -> None: ...


BASE: dict[str, Any] = {
    "bgp": {
        "local_as": 65001,
        "router_id": "10.0.1.2",
        "peers": [{"address": "10.0.1.1", "peer_as": 65100}],
    },
    "services": [
        {
            "name": "web",
            "check": {"type": "tcp", "host": "127.0.0.1", "port": 8080},
            "rise": 2,
            "fall": 2,
        }
    ],
    "prefixes": [{"prefix": "10.255.0.1/32", "services": ["web"], "bandwidth_mbps": 10000}],
    "drain": {"graceful_shutdown_hold": 5, "connection_timeout": 30},
}


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    path = tmp_path / "config.yaml"

    def write(data: dict[str, Any]) -> Path:
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return write


def make_supervisor(path: Path) -> tuple[Supervisor, FakeDriver]:
    driver = FakeDriver()
    config: Config = load_config(path)
    supervisor = Supervisor(
        config,
        NoProbe(),
        AllPresent(),
        lambda _: driver,  # type: ignore[arg-type,return-value]
        config_path=str(path),
    )
    return supervisor, driver


def healthy(supervisor: Supervisor, now: float = 0.0, service: str = "web") -> None:
    supervisor.apply(AddressChange("10.255.0.1/32", True), now)
    supervisor.apply(SessionChange("10.0.1.1", True, "up"), now)
    for _ in range(2):
        supervisor.apply(ProbeOutcome(service, ProbeResult(True, 0.001, "connected"), 0), now)


def probe(supervisor: Supervisor, ok: bool, now: float, times: int = 2) -> None:
    for _ in range(times):
        supervisor.apply(
            ProbeOutcome(
                "web", ProbeResult(ok, 0.001, "connected" if ok else "connect refused"), 0
            ),
            now,
        )


class TestDecisions:
    async def test_announces_after_rise_and_withdraws_after_fall(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        supervisor, driver = make_supervisor(write_config(BASE))
        healthy(supervisor)
        assert list(driver.desired) == [RouteKey("10.0.1.1", "10.255.0.1/32")]
        probe(supervisor, False, 1.0)
        assert driver.desired == {}
        assert supervisor.decisions["10.255.0.1/32"].reason == "service web down"

    async def test_session_down_removes_its_routes(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        supervisor, driver = make_supervisor(write_config(BASE))
        healthy(supervisor)
        supervisor.apply(SessionChange("10.0.1.1", False, "hold timer expired"), 1.0)
        assert driver.desired == {}
        assert supervisor.status().peers[0].last_change_reason == "hold timer expired"

    async def test_flapping_service_gets_dampened_then_released(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        """Three health withdrawals in quick succession keep the prefix out ~30 s."""
        supervisor, driver = make_supervisor(write_config(BASE))
        healthy(supervisor)
        for flap in range(3):
            probe(supervisor, False, 1.0 + flap)
            probe(supervisor, True, 1.5 + flap)
        assert driver.desired == {}
        assert supervisor.decisions["10.255.0.1/32"].state == "dampened"
        deadline = supervisor.next_deadline()
        assert deadline is not None
        assert 25 < deadline < 40
        supervisor.recompute(deadline)
        assert list(driver.desired) == [RouteKey("10.0.1.1", "10.255.0.1/32")]


class TestDrain:
    async def test_drain_sequence_through_the_supervisor(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        """Drain: route unchanged while connections remain, then 65535:0, then gone."""
        supervisor, driver = make_supervisor(write_config(BASE))
        healthy(supervisor)
        normal = dict(driver.desired)
        drain = asyncio.create_task(supervisor.drain(None, "maintenance"))
        request = await supervisor._inputs.get()
        supervisor.apply(request, 10.0)
        result = await drain
        assert result.ok
        assert result.prefixes == ("10.255.0.1/32",)
        assert driver.desired == normal
        supervisor.apply(ConnectionsCounted("10.255.0.1/32", 4), 11.0)
        assert driver.desired == normal
        assert supervisor.status().prefixes[0].established_connections == 4
        supervisor.apply(ConnectionsCounted("10.255.0.1/32", 0), 12.0)
        (route,) = driver.desired.values()
        assert "65535:0" in route.communities
        assert supervisor.next_deadline() == 17.0
        supervisor.recompute(17.0)
        assert driver.desired == {}
        assert supervisor.status().prefixes[0].drain_phase == "withdrawn"
        undrain = asyncio.create_task(supervisor.undrain(None))
        supervisor.apply(await supervisor._inputs.get(), 20.0)
        assert (await undrain).ok
        assert driver.desired == normal
        for task in supervisor._drain_workers.values():
            task.cancel()

    async def test_unknown_prefix_is_refused(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        supervisor, _ = make_supervisor(write_config(BASE))
        drain = asyncio.create_task(supervisor.drain(["10.9.9.9/32"], "x"))
        supervisor.apply(await supervisor._inputs.get(), 0.0)
        result = await drain
        assert not result.ok
        assert result.message == "not a configured prefix: 10.9.9.9/32"

    async def test_drain_is_persisted_and_restored(
        self, write_config: Callable[[dict[str, Any]], Path], tmp_path: Path
    ) -> None:
        """A drain survives a restart: the new supervisor starts drained."""
        data = {**BASE, "drain": {"state_file": str(tmp_path / "drain.json")}}
        path = write_config(data)
        first, _ = make_supervisor(path)
        drain = asyncio.create_task(first.drain(None, "maintenance"))
        first.apply(await first._inputs.get(), 0.0)
        await drain
        for task in first._drain_workers.values():
            task.cancel()
        second, driver = make_supervisor(path)
        second.restore_drains(0.0)
        healthy(second)
        assert driver.desired == {}
        assert second.decisions["10.255.0.1/32"].reason == "drained: maintenance"

    async def test_corrupt_drain_state_refuses_to_start(
        self, write_config: Callable[[dict[str, Any]], Path], tmp_path: Path
    ) -> None:
        state = tmp_path / "drain.json"
        state.write_text("{not json", encoding="utf-8")
        supervisor, _ = make_supervisor(write_config({**BASE, "drain": {"state_file": str(state)}}))
        with pytest.raises(StartupError, match="cannot read drain state"):
            supervisor.restore_drains(0.0)


class TestReload:
    async def reload(self, supervisor: Supervisor, now: float = 5.0) -> Any:
        task = asyncio.create_task(supervisor.reload())
        supervisor.apply(await supervisor._inputs.get(), now)
        return await task

    async def test_bandwidth_change_reannounces_without_touching_bgp(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        path = write_config(BASE)
        supervisor, driver = make_supervisor(path)
        supervisor._start_probes = lambda: None  # type: ignore[method-assign]
        healthy(supervisor)
        changed = {**BASE, "prefixes": [{**BASE["prefixes"][0], "bandwidth_mbps": 1000}]}
        write_config(changed)
        result = await self.reload(supervisor)
        assert result.ok
        assert result.message == "reloaded"
        (route,) = driver.desired.values()
        assert route.bandwidth_bps == 1e9
        assert driver.reconfigured == []  # sessions untouched
        assert supervisor.services["web"].machine.state.value == "up"  # no flap

    async def test_invalid_file_changes_nothing(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        path = write_config(BASE)
        supervisor, driver = make_supervisor(path)
        healthy(supervisor)
        before = dict(driver.desired)
        path.write_text("bgp: [", encoding="utf-8")
        result = await self.reload(supervisor)
        assert not result.ok
        assert "invalid YAML" in result.message
        assert driver.desired == before
        assert supervisor.status().last_reload_error is not None

    async def test_added_prefix_leaves_the_others_alone(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        """A partial change: one prefix added, nothing else moves."""
        path = write_config(BASE)
        supervisor, driver = make_supervisor(path)
        supervisor._start_probes = lambda: None  # type: ignore[method-assign]
        healthy(supervisor)
        second = {"prefix": "10.255.0.2/32", "services": ["web"], "bandwidth_mbps": 10000}
        write_config({**BASE, "prefixes": [*BASE["prefixes"], second]})
        assert (await self.reload(supervisor)).ok
        supervisor.apply(AddressChange("10.255.0.2/32", True), 6.0)
        assert set(driver.desired) == {
            RouteKey("10.0.1.1", "10.255.0.1/32"),
            RouteKey("10.0.1.1", "10.255.0.2/32"),
        }

    async def test_bgp_change_restarts_exabgp(
        self, write_config: Callable[[dict[str, Any]], Path]
    ) -> None:
        path = write_config(BASE)
        supervisor, driver = make_supervisor(path)
        supervisor._start_probes = lambda: None  # type: ignore[method-assign]
        write_config({**BASE, "bgp": {**BASE["bgp"], "hold_time": 30}})
        result = await self.reload(supervisor)
        assert result.message == "reloaded; bgp changed: ExaBGP restarted"
        assert [bgp.hold_time for bgp in driver.reconfigured] == [30]
