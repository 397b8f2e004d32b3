"""The shell's owner of the flow-rescue data path (the core says what; this does it).

``sync`` builds the plan for this host (its member address and the underlay MTU are host
facts, read here) and applies it as a diff: ``rescue.kernel`` reads what is installed
and changes only what differs, so a restart takes over what it finds and a reload moves
membership without dropping learnt flows. Applies run one at a time, off the event loop,
the newest configuration last. While rescue is configured, the counters are read every
few seconds for ``/status`` and ``/metrics``, and the installed state is compared with
the plan now and then: drift (someone deleted a table) is logged and repaired.

Nothing is removed at shutdown: the kernel keeps rescuing this server's live connections
without a process. Removal is ``anycast-announcer rescue remove``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from anycast_announcer.config import Config
from anycast_announcer.metrics import RescueCounters as MetricCounters
from anycast_announcer.metrics import RescuePeerCounters
from anycast_announcer.rescue.counters import RescueCounters, Traffic
from anycast_announcer.rescue.model import RescuePlan, build_plan
from anycast_announcer.rescue.mtu import mtu_warnings
from anycast_announcer.status import RescuePeerStatus, RescueStatus, RescueTraffic

__all__ = ["COUNTER_INTERVAL", "DRIFT_CHECKS", "RescueKeeper"]

log = structlog.get_logger("anycast_announcer")

COUNTER_INTERVAL = 5.0
"""Seconds between two readings of the kernel counters."""
DRIFT_CHECKS = 6
"""Every this many readings, the installed state is compared with the plan."""


class RescueSink(Protocol):
    """Where the counters go (``metrics.Metrics``)."""

    def rescue_counters(self, counters: MetricCounters | None) -> None: ...


class RescueKeeper:
    """Applies the rescue plan, repairs drift, and reads the counters."""

    def __init__(
        self,
        metrics: RescueSink | None = None,
        on_applied: Callable[[str, tuple[str, ...]], None] | None = None,
    ) -> None:
        self._metrics = metrics
        self._on_applied = on_applied
        """Told this server's member address after each successful apply (member route),
        and the peers a first apply found installed and kept (learnt membership)."""
        self._learnt: tuple[str, ...] = ()
        self._config: Config | None = None
        self._plan: RescuePlan | None = None
        self._counters: RescueCounters | None = None
        self._applied_at: float | None = None
        self._error: str | None = None
        self._latest: tuple[Config, tuple[str, ...]] | None = None
        self._wanted: tuple[Config, tuple[str, ...]] | None = None
        """The newest plan asked for (applied or not): drift repair and retries use it."""
        self._failed = False
        self._applying: asyncio.Task[None] | None = None

    async def apply(self, config: Config, learnt: tuple[str, ...] = ()) -> None:
        """Build the plan for this host and apply it; raises ``RescueError``.

        ``learnt``: members learnt from member routes, beside the configured ones.
        """
        from anycast_announcer.rescue.kernel import AsyncRescueKernel, host_facts

        assert config.rescue is not None  # the core asks only when configured
        facts = await asyncio.to_thread(host_facts, config.rescue)
        inherited: tuple[str, ...] = ()
        if self._plan is None and config.rescue.membership is not None:
            # A restarted sidecar knows no member yet, but its data path still rescues
            # the group's flows: keep the peers it finds until member routes (or their
            # hold-down) decide, instead of cutting them out before BGP is even up.
            installed = await AsyncRescueKernel().read_installed()
            overlay = installed.overlays.get(config.rescue.device)
            found = {dst for _, dst in overlay.fdb} if overlay is not None else set()
            inherited = tuple(sorted(found - set(learnt)))
            learnt = (*learnt, *inherited)
        plan = build_plan(
            config,
            local_address=facts.local_address,
            underlay_mtu=facts.underlay_mtu,
            learnt=[ipaddress.ip_address(member) for member in learnt],
        )
        for warning in mtu_warnings(plan):
            log.warning("rescue_mtu", warning=warning)
        report = await AsyncRescueKernel().apply(plan)
        self._config, self._plan, self._error = config, plan, None
        self._learnt = learnt
        self._applied_at = time.time()
        log.info(
            "rescue_applied",
            member=str(plan.me.address),
            peers=[str(peer.address) for peer in plan.peers],
            changed=report.changed,
            steps=list(report.link_steps),
            tables=list(report.tables_written),
            adopted=report.adopted,
        )
        if self._on_applied is not None:
            self._on_applied(str(plan.me.address), inherited)
        await self._read_counters()

    def sync(self, config: Config, learnt: tuple[str, ...] = ()) -> None:
        """Apply ``config``'s plan soon (a reload, learnt members); failures are logged
        and retried at the next counter reading."""
        self._latest = self._wanted = (config, learnt)
        if self._applying is None or self._applying.done():
            self._applying = asyncio.get_running_loop().create_task(self._apply_latest())

    async def _apply_latest(self) -> None:
        from anycast_announcer.rescue.kernel import RescueError

        while self._latest is not None:
            (config, learnt), self._latest = self._latest, None
            try:
                await self.apply(config, learnt)
                self._failed = False
            except RescueError as error:
                self._failed = True
                self._error = str(error)
                log.error("rescue_not_applied", error=str(error))
                if self._metrics is not None:
                    counters = self._counters or RescueCounters()
                    self._metrics.rescue_counters(_for_metrics(counters, installed=False))

    def forget(self) -> None:
        """The config no longer names a group: stop reporting (the data path stays)."""
        self._config = self._plan = self._counters = None
        self._wanted, self._failed = None, False
        self._error = None
        if self._metrics is not None:
            self._metrics.rescue_counters(None)

    async def run(self) -> None:
        """Read the counters while rescue is configured; repair drift now and then."""
        readings = 0
        while True:
            await asyncio.sleep(COUNTER_INTERVAL)
            if self._plan is None:
                continue
            readings += 1
            if self._failed and self._wanted is not None:
                # A failed apply (a learnt member, a reload) is not left for the drift
                # check: the data path would miss a member until then.
                self.sync(*self._wanted)
            await self._read_counters()
            if readings % DRIFT_CHECKS == 0:
                await self._repair_drift()

    async def close(self) -> None:
        """Wait for an apply under way (the data path itself stays installed)."""
        if self._applying is not None:
            await asyncio.gather(self._applying, return_exceptions=True)

    def status(self) -> RescueStatus | None:
        """The data path as last seen; None when rescue is not configured."""
        if self._config is None and self._error is None:
            return None
        counters = self._counters or RescueCounters()
        return RescueStatus(
            installed=self._plan is not None and self._error is None,
            member=str(self._plan.me.address) if self._plan is not None else None,
            peers=tuple(
                RescuePeerStatus(
                    peer=peer.peer,
                    forwarded=_traffic(peer.forwarded),
                    received=_traffic(peer.received),
                    refused=_traffic(peer.refused),
                    feedback_sent=_traffic(peer.feedback_sent),
                    feedback_received=_traffic(peer.feedback_received),
                )
                for peer in counters.peers
            ),
            replicated=_traffic(counters.replicated),
            icmp_relayed=_traffic(counters.icmp_relayed),
            orphans=_traffic(counters.orphans),
            last_applied_at=self._applied_at,
            last_error=self._error,
        )

    async def _read_counters(self) -> None:
        from anycast_announcer.rescue.kernel import AsyncRescueKernel, RescueError

        try:
            self._counters = await AsyncRescueKernel().counters()
        except RescueError as error:
            log.warning("rescue_counters_unreadable", error=str(error))
            return
        if self._metrics is not None:
            self._metrics.rescue_counters(_for_metrics(self._counters, installed=True))

    async def _repair_drift(self) -> None:
        from anycast_announcer.rescue.kernel import AsyncRescueKernel, RescueError

        if self._plan is None or self._config is None:
            return
        try:
            if await AsyncRescueKernel().in_sync(self._plan):
                return
        except RescueError as error:
            log.warning("rescue_state_unreadable", error=str(error))
            return
        log.warning("rescue_drift", action="re-applying the plan")
        self.sync(*(self._wanted or (self._config, self._learnt)))


def _traffic(traffic: Traffic) -> RescueTraffic:
    return RescueTraffic(packets=traffic.packets, bytes=traffic.bytes)


def _for_metrics(counters: RescueCounters, *, installed: bool) -> MetricCounters:
    return MetricCounters(
        installed=installed,
        peers={
            peer.peer: RescuePeerCounters(
                packets_sent=peer.forwarded.packets,
                packets_received=peer.received.packets,
                bytes_sent=peer.forwarded.bytes,
                bytes_received=peer.received.bytes,
            )
            for peer in counters.peers
        },
        icmp_relayed=counters.icmp_relayed.packets,
        orphans=counters.orphans.packets,
    )
