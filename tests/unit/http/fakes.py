"""An in-memory ``Control`` and a realistic status snapshot, for the operator-surface tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from anycast_announcer.checks import ProbeResult
from anycast_announcer.core import effects as fx
from anycast_announcer.history import History
from anycast_announcer.historymodels import HistoryWindow, SidecarHistory
from anycast_announcer.http import create_app
from anycast_announcer.metrics import Metrics
from anycast_announcer.status import (
    ControlResult,
    ExabgpStatus,
    PeerStatus,
    PrefixStatus,
    ProbeStatus,
    RescuePeerStatus,
    RescueStatus,
    RescueTraffic,
    RouteAttributes,
    ServiceStatus,
    SidecarStatus,
)

TOKEN = "s3cret-token-0123456789"  # noqa: S105  # a test fixture
NOW = 1_790_000_000.0
EVIL_SERVICE = '<script>document.title="pwned"</script>'


def sample_rescue() -> RescueStatus:
    """Flow rescue installed with two peers, one of which rescued traffic to us."""

    def traffic(packets: int) -> RescueTraffic:
        return RescueTraffic(packets=packets, bytes=packets * 1400)

    return RescueStatus(
        installed=True,
        member="10.0.1.2",
        peers=(
            RescuePeerStatus(
                peer="10.0.2.2",
                forwarded=traffic(120),
                received=traffic(4521),
                refused=traffic(3),
                feedback_sent=traffic(15),
                feedback_received=traffic(2),
            ),
            RescuePeerStatus(
                peer="10.0.3.2",
                forwarded=traffic(0),
                received=traffic(0),
                refused=traffic(0),
                feedback_sent=traffic(0),
                feedback_received=traffic(0),
            ),
        ),
        replicated=traffic(80),
        icmp_relayed=traffic(7),
        orphans=traffic(1),
        last_applied_at=NOW - 600,
        last_error=None,
    )


def sample_status() -> SidecarStatus:
    """Two prefixes (one announced, one withdrawn), three services, two peers."""
    return SidecarStatus(
        version="0.1.0",
        started_at=NOW - 3725,
        uptime=3725.0,
        config_path="/etc/anycast-announcer/config.yaml",
        config_loaded_at=NOW - 60,
        last_reload_error=None,
        services=(
            ServiceStatus(
                name="web",
                check_type="tcp",
                state="up",
                consecutive_successes=12,
                consecutive_failures=0,
                rise=2,
                fall=2,
                interval=1.0,
                last_results=(
                    ProbeStatus(at=NOW - 1, ok=True, latency=0.0012, reason="connected"),
                ),
                last_change_at=NOW - 3700,
                last_change_reason="connected",
            ),
            ServiceStatus(
                name="dns",
                check_type="command",
                state="down",
                consecutive_successes=0,
                consecutive_failures=5,
                rise=2,
                fall=2,
                interval=1.0,
                last_results=(
                    ProbeStatus(at=NOW - 2, ok=False, latency=0.01, reason="exit status 3: boom"),
                    ProbeStatus(at=NOW - 1, ok=False, latency=0.5, reason="timeout after 0.5s"),
                ),
                last_change_at=NOW - 4,
                last_change_reason="timeout after 0.5s",
            ),
            ServiceStatus(
                name=EVIL_SERVICE,
                check_type="http",
                state="unknown",
                consecutive_successes=0,
                consecutive_failures=0,
                rise=2,
                fall=2,
                interval=2.0,
                last_results=(),
                last_change_at=None,
                last_change_reason=None,
            ),
        ),
        prefixes=(
            PrefixStatus(
                prefix="10.255.0.1/32",
                state="announced",
                reason="all services up",
                services=("web",),
                require="all",
                address_present=True,
                interface="lo",
                bandwidth_mbps=25000.0,
                drain_phase="none",
                drain_reason=None,
                established_connections=None,
                dampening_penalty=0.0,
                routes={
                    "10.0.1.1": RouteAttributes(
                        med=100,
                        communities=("65001:100",),
                        large_communities=(),
                        extended_communities=("0x0004fde94e9502f9",),
                        as_path=(),
                        bandwidth_bps=3.125e9,
                    )
                },
            ),
            PrefixStatus(
                prefix="10.255.0.53/32",
                state="withdrawn",
                reason="service dns is down: timeout after 0.5s",
                services=("dns",),
                require="all",
                address_present=True,
                interface="lo",
                bandwidth_mbps=None,
                drain_phase="none",
                drain_reason=None,
                established_connections=None,
                dampening_penalty=0.0,
            ),
        ),
        peers=(
            PeerStatus(
                address="10.0.1.1",
                peer_as=65100,
                state="up",
                last_change_at=NOW - 3600,
                last_change_reason="session established",
            ),
            PeerStatus(
                address="fd00:1::1",
                peer_as=65100,
                state="down",
                last_change_at=NOW - 10,
                last_change_reason="hold timer expired",
            ),
        ),
        exabgp=ExabgpStatus(
            pid=4242,
            running=True,
            connected=True,
            restarts=1,
            routes_acknowledged=2,
            routes_desired=2,
        ),
    )


FLAP = ((-1800.0, "withdrawn"), (-1500.0, "announced"), (-4.0, "withdrawn"))
"""When the dns prefix flapped in the sample history (seconds before NOW), and to what."""


def sample_recorder(started: float = NOW - 3725) -> History:
    """A history as the supervisor would have recorded it for ``sample_status``: web
    steady, dns flapping (its prefix withdrawn, announced again, withdrawn), a session
    that dropped, rescue handing packets over."""
    history = History(started)
    history.observe(fx.PeerChanged("10.0.1.1", False, "not established yet"), started)
    history.observe(fx.PeerChanged("fd00:1::1", False, "not established yet"), started)
    history.observe(fx.PeerChanged("10.0.1.1", True, "session established"), NOW - 3600)
    history.observe(fx.PeerChanged("fd00:1::1", True, "session established"), NOW - 3600)
    history.observe(fx.PeerChanged("fd00:1::1", False, "hold timer expired"), NOW - 10)
    for prefix in ("10.255.0.1/32", "10.255.0.53/32"):
        history.observe(fx.PrefixChanged(prefix, "withdrawn", False, "starting"), started)
    for service in ("web", "dns"):
        history.observe(fx.ServiceChanged(service, True, "probe: connected"), NOW - 3700)
    history.observe(fx.PrefixChanged("10.255.0.1/32", "announced", True, "services up"), NOW - 3700)
    history.observe(
        fx.PrefixChanged("10.255.0.53/32", "announced", True, "services up"), NOW - 3700
    )
    for offset, state in FLAP:
        up = state == "announced"
        reason = "probe: connected" if up else "probe: timeout after 0.5s"
        history.observe(fx.ServiceChanged("dns", up, reason), NOW + offset)
        why = "services up" if up else "service dns is down: timeout after 0.5s"
        history.observe(fx.PrefixChanged("10.255.0.53/32", state, up, why), NOW + offset)  # type: ignore[arg-type]  # the two states FLAP holds
    for second in range(-3700, 0, 5):
        history.observe(
            fx.ProbeRecorded("web", ProbeResult(True, 0.001 + (second % 7) / 10_000, "connected")),
            NOW + second,
        )
        failing = -1800 <= second < -1500 or second >= -5
        dns = (
            ProbeResult(False, 0.5, "timeout after 0.5s")
            if failing
            else ProbeResult(True, 0.01 + (second % 60 == 0) * 0.05, "exit 0")
        )
        history.observe(fx.ProbeRecorded("dns", dns), NOW + second)
    for second in range(-3600, 0, 5):
        handed = 1000 + max(0, second + 1800) * 40
        history.rescue_counters(handed_over=handed, rescued=(second + 3600) // 10, at=NOW + second)
    return history


_Model = TypeVar("_Model", bound=BaseModel)


def replace(model: _Model, **changes: object) -> _Model:
    """A copy of a (frozen) status model with some fields changed."""
    return model.model_copy(update=changes)


@dataclass
class FakeControl:
    """Answers like the supervisor would, from a fixed snapshot, and records requests."""

    snapshot: SidecarStatus = field(default_factory=sample_status)
    is_ready: bool = True
    reload_result: ControlResult = field(
        default_factory=lambda: ControlResult(ok=True, message="config reloaded")
    )
    calls: list[tuple[object, ...]] = field(default_factory=list)
    recorder: History = field(default_factory=sample_recorder)

    def status(self) -> SidecarStatus:
        return self.snapshot

    def history(self, window: HistoryWindow) -> SidecarHistory:
        return self.recorder.snapshot(window, NOW)

    def ready(self) -> bool:
        return self.is_ready

    def _known(self) -> tuple[str, ...]:
        return tuple(prefix.prefix for prefix in self.snapshot.prefixes)

    async def drain(self, prefixes: list[str] | None, reason: str) -> ControlResult:
        self.calls.append(("drain", prefixes, reason))
        unknown = [p for p in prefixes or [] if p not in self._known()]
        if unknown:
            return ControlResult(
                ok=False, message=f"unknown prefix {unknown[0]}", prefixes=tuple(unknown)
            )
        return ControlResult(ok=True, message="draining", prefixes=tuple(prefixes or self._known()))

    async def undrain(self, prefixes: list[str] | None) -> ControlResult:
        self.calls.append(("undrain", prefixes))
        unknown = [p for p in prefixes or [] if p not in self._known()]
        if unknown:
            return ControlResult(
                ok=False, message=f"unknown prefix {unknown[0]}", prefixes=tuple(unknown)
            )
        return ControlResult(
            ok=True, message="undrained", prefixes=tuple(prefixes or self._known())
        )

    async def reload(self) -> ControlResult:
        self.calls.append(("reload",))
        return self.reload_result

    def with_exabgp_down(self) -> None:
        self.snapshot = replace(
            self.snapshot,
            exabgp=replace(self.snapshot.exabgp, running=False, pid=None),
        )


def make_app(
    control: FakeControl | None = None,
    *,
    token: str | None = TOKEN,
    max_body: int = 64 * 1024,
    metrics: Metrics | None = None,
) -> web.Application:
    return create_app(
        control or FakeControl(), metrics or Metrics(), token=token, max_body=max_body
    )


@asynccontextmanager
async def client_for(
    app: web.Application,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A test client on 127.0.0.1, closed (with its server) whatever happens."""
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
