"""Driving the decision core synchronously: configs, clocks and canned inputs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import structlog

from anycast_announcer.config import Config
from anycast_announcer.core import Instant, SidecarCore
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    AddressChanged,
    Input,
    ProbeCompleted,
    SessionChanged,
)
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.results import ProbeResult
from anycast_announcer.routes import Route, RouteKey

PEER = "10.0.1.1"
PREFIX = "10.255.0.1/32"
WALL_OFFSET = 1_790_000_000.0
LOG = structlog.get_logger("anycast_announcer")
"""The logger the shell injects; ``capture_logs`` sees what the core writes to it."""

BASE: dict[str, Any] = {
    "bgp": {
        "local_as": 65001,
        "router_id": "10.0.1.2",
        "peers": [{"address": PEER, "peer_as": 65100}],
    },
    "services": [
        {
            "name": "web",
            "check": {"type": "tcp", "host": "127.0.0.1", "port": 8080},
            "rise": 2,
            "fall": 2,
        }
    ],
    "prefixes": [{"prefix": PREFIX, "services": ["web"], "bandwidth_mbps": 10000}],
    "drain": {"graceful_shutdown_hold": 5, "connection_timeout": 30},
}


def at(monotonic: float) -> Instant:
    """An instant whose wall clock runs a fixed offset ahead of the monotonic one."""
    return Instant(monotonic, WALL_OFFSET + monotonic)


def config(data: dict[str, Any] | None = None) -> Config:
    """A validated config (``BASE`` by default)."""
    return Config.model_validate(data or BASE)


class Harness:
    """A core plus the state a shell would keep from its effects."""

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        restored: Sequence[PersistedDrain] = (),
        now: float = 0.0,
    ) -> None:
        self.core = SidecarCore(
            config(data), at(now), logger=LOG, config_path="config.yaml", restored=restored
        )
        self.routes: dict[RouteKey, Route] = {}
        self.effects: list[fx.Effect] = []
        self.workers: set[str] = set()
        self.take(self.core.start(at(now)))

    def take(self, effects: Iterable[fx.Effect]) -> list[fx.Effect]:
        """Apply the effects to the harness's view, as the shell would perform them."""
        taken = list(effects)
        for effect in taken:
            if isinstance(effect, fx.SyncRoutes):
                self.routes = dict(effect.routes)
            elif isinstance(effect, fx.StartDrainWorker):
                assert effect.prefix not in self.workers, "a worker started twice"
                self.workers.add(effect.prefix)
            elif isinstance(effect, fx.StopDrainWorker):
                self.workers.discard(effect.prefix)
        self.effects += taken
        return taken

    def feed(self, item: Input, now: float) -> list[fx.Effect]:
        """One input at ``now``."""
        return self.take(self.core.handle(item, at(now)))

    def tick(self, now: float) -> list[fx.Effect]:
        """The core's timer fired at ``now``."""
        return self.take(self.core.handle_timer(at(now)))

    def probe(self, ok: bool, now: float, times: int = 2, service: str = "web") -> None:
        """``times`` probe results for ``service``."""
        reason = "connected" if ok else "connect refused"
        for _ in range(times):
            self.feed(ProbeCompleted(service, ProbeResult(ok, 0.001, reason)), now)

    def healthy(self, now: float = 0.0, prefix: str = PREFIX) -> None:
        """Address present, session up, the service up."""
        address = ipaddress.ip_network(prefix).network_address
        self.feed(AddressChanged("lo", address, True), now)
        self.feed(SessionChanged(PEER, True, "up"), now)
        self.probe(True, now)

    def of_type(self, kind: type[Any]) -> list[Any]:
        """Every effect of ``kind`` so far."""
        return [effect for effect in self.effects if isinstance(effect, kind)]
