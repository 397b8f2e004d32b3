"""Fakes at the process boundary for the shell's workers: netlink addresses, ExaBGP,
probes and the event sources. Everything inside the process is the real code."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from anycast_announcer.config import BgpConfig, Config, ExabgpConfig
from anycast_announcer.core.inputs import AddressChanged
from anycast_announcer.exabgp.driver import (
    DriverSnapshot,
    EndOfRibCallback,
    RoutesCallback,
    SessionCallback,
)
from anycast_announcer.localaddr import AddressError, IPNetwork
from anycast_announcer.results import ProbeResult
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.workers import Submit

BASE: dict[str, Any] = {
    "bgp": {
        "local_as": 65001,
        "router_id": "10.0.1.2",
        "peers": [{"address": "10.0.1.1", "peer_as": 65100}],
    },
    "services": [
        {
            "name": "web",
            "check": {"type": "tcp", "host": "127.0.0.1", "port": 9},
            "interval": 0.05,
            "timeout": 0.05,
            "rise": 1,
            "fall": 1,
        }
    ],
    "prefixes": [
        {"prefix": "10.255.0.1/32", "services": ["web"], "manage_address": True},
        {"prefix": "10.255.0.2/32", "services": ["web"], "manage_address": True},
    ],
    "drain": {"graceful_shutdown_hold": 0, "connection_timeout": 1},
}


class FakeBook:
    """Addresses on interfaces, as rtnetlink would hold them; ``fail_on`` refuses one."""

    def __init__(self, present: set[tuple[str, str]] | None = None) -> None:
        self.addresses: set[tuple[str, str]] = set(present or ())
        self.fail_on: str | None = None
        self.fail_remove = False

    async def present(self, interface: str, network: IPNetwork) -> bool:
        return (interface, str(network)) in self.addresses

    async def add(self, interface: str, network: IPNetwork) -> None:
        if str(network) == self.fail_on:
            raise AddressError(f"cannot add {network} to {interface}: Operation not permitted")
        self.addresses.add((interface, str(network)))

    async def remove(self, interface: str, network: IPNetwork) -> None:
        if self.fail_remove:
            raise AddressError(f"cannot remove {network} from {interface}")
        self.addresses.discard((interface, str(network)))


class FakeDriver:
    """ExaBGP acknowledging everything at once, its one session up."""

    def __init__(
        self,
        on_session: SessionCallback,
        on_routes: RoutesCallback,
        on_end_of_rib: EndOfRibCallback,
    ) -> None:
        self.desired: dict[RouteKey, Route] = {}
        self._on_session = on_session
        self._on_routes = on_routes
        self._on_end_of_rib = on_end_of_rib
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        self._on_session("10.0.1.1", True, "session established")
        await self._stopped.wait()

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> None:
        self.desired = dict(routes)

    def reconfigure(self, bgp: BgpConfig, settings: ExabgpConfig) -> None:
        pass

    def snapshot(self) -> DriverSnapshot:
        return DriverSnapshot(4242, 0, True, frozenset({"10.0.1.1"}), 0, 0)

    async def wait_synced(self) -> None:
        pass

    async def stop(self) -> None:
        self._stopped.set()


class Healthy:
    async def probe(self, check: Any, timeout: float) -> ProbeResult:
        return ProbeResult(True, 0.001, "connected")


class FakeDetection:
    """The event sources: reports the addresses present; ``open``/``configure`` can fail."""

    def __init__(self, submit: Submit) -> None:
        self._submit = submit
        self.fail_open: BaseException | None = None
        self.fail_configure: BaseException | None = None
        self.closed = False

    async def open(self, config: Config) -> None:
        if self.fail_open is not None:
            raise self.fail_open
        await self.configure(config)

    async def configure(self, config: Config) -> None:
        if self.fail_configure is not None:
            raise self.fail_configure
        for prefix in config.prefixes:
            self._submit(AddressChanged(prefix.interface, prefix.prefix.network_address, True))

    def close(self) -> None:
        self.closed = True
