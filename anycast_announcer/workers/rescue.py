"""The shell's owner of the flow-rescue data path (the core says what; this does it).

``sync`` builds the plan for this host (its member address and the underlay MTU are host
facts, read here) and applies it as a diff: ``rescue.kernel`` reads what is installed
and changes only what differs, so a restart takes over what it finds and a reload moves
membership without dropping learnt flows. Applies run one at a time, off the event loop,
the newest configuration last. While rescue is configured, the counters are read every
few seconds for ``/status`` and ``/metrics``.

Drift (someone deleted or altered a table: ``flush ruleset`` in a host firewall's reload)
is repaired at once: nftables' netlink notifications (``rescue.watch``) wake a check,
and a slow check every 30 s covers a watch that could not be opened. A check compares
the kernel with the plan last applied; it never queues anything while an apply is under
way or after a newer configuration arrived (``sync``), since the plan it compared with
is then stale and re-applying it would undo the newer one. A change announced during an
apply is checked again once the apply is done.

A membership change that moves buckets empties the owners' ``registered`` set with the
new bucket map; ``reregister_after`` seconds later the keeper empties it once more
(``rescue.reregistration``), so a directory member that took the change a little
later than this server still gets this server's registrations.

Nothing is removed at shutdown: the kernel keeps rescuing this server's live connections
without a process. Removal is ``anycast-announcer rescue remove``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from anycast_announcer.config import Config, RescueConfig
from anycast_announcer.metrics import RescueCounters as MetricCounters
from anycast_announcer.metrics import RescuePeerCounters
from anycast_announcer.rescue.counters import RescueCounters, Traffic
from anycast_announcer.rescue.kernel import (
    ApplyReport,
    AsyncRescueKernel,
    HostFacts,
    Installed,
    RescueError,
)
from anycast_announcer.rescue.model import RescuePlan, build_plan
from anycast_announcer.rescue.mtu import mtu_warnings
from anycast_announcer.rescue.reregistration import Reregistration
from anycast_announcer.rescue.watch import Change, NftablesWatch
from anycast_announcer.status import RescuePeerStatus, RescueStatus, RescueTraffic

__all__ = [
    "COUNTER_INTERVAL",
    "DRIFT_CHECKS",
    "ChangeFeed",
    "RescueKeeper",
    "RescueKernelPort",
]

log = structlog.get_logger("anycast_announcer")

COUNTER_INTERVAL = 5.0
"""Seconds between two readings of the kernel counters."""
DRIFT_CHECKS = 6
"""Every this many readings, the installed state is compared with the plan."""


class RescueSink(Protocol):
    """Where the counters go (``metrics.Metrics``)."""

    def rescue_counters(self, counters: MetricCounters | None) -> None: ...


class RescueKernelPort(Protocol):
    """The kernel as the keeper uses it (``rescue.kernel.AsyncRescueKernel``)."""

    async def host_facts(self, settings: RescueConfig) -> HostFacts: ...

    async def apply(self, plan: RescuePlan, *, warm: bool = True) -> ApplyReport: ...

    async def in_sync(self, plan: RescuePlan) -> bool: ...

    async def forget_registrations(self, plan: RescuePlan) -> tuple[str, ...]: ...

    async def restore(self, plan: RescuePlan, families: Iterable[str]) -> ApplyReport: ...

    async def counters(self) -> RescueCounters: ...

    async def read_installed(self) -> Installed: ...


class ChangeFeed(Protocol):
    """Wakes when the rescue tables may have changed (``rescue.watch.NftablesWatch``)."""

    def open(self) -> None: ...

    async def changed(self) -> Change: ...

    def close(self) -> None: ...


class RescueKeeper:
    """Applies the rescue plan, repairs drift, and reads the counters."""

    def __init__(
        self,
        metrics: RescueSink | None = None,
        on_applied: Callable[[str, tuple[str, ...], tuple[str, ...]], None] | None = None,
        *,
        kernel: RescueKernelPort | None = None,
        changes: Callable[[], ChangeFeed] = NftablesWatch,
    ) -> None:
        self._metrics = metrics
        self._on_applied = on_applied
        """Told this server's member address after each successful apply (member route),
        the peers a first apply found installed and kept (learnt membership), and every
        peer the applied plan holds (the start-up gate)."""
        self._learnt: tuple[str, ...] = ()
        self._kernel: RescueKernelPort = kernel if kernel is not None else AsyncRescueKernel()
        self._changes = changes
        self._generation = 0
        """Bumped by every ``sync`` and ``forget``: a check that saw another is stale."""
        self._in_apply = 0
        self._recheck = False
        self._repairing = False
        self._checking: asyncio.Task[None] | None = None
        self._config: Config | None = None
        self._plan: RescuePlan | None = None
        self._counters: RescueCounters | None = None
        self._applied_at: float | None = None
        self._error: str | None = None
        self._latest: tuple[Config, tuple[str, ...]] | None = None
        self._wanted: tuple[Config, tuple[str, ...]] | None = None
        """The newest plan asked for (applied or not): drift repair and retries use it."""
        self._applying: asyncio.Task[None] | None = None
        self._reregistration = Reregistration()
        self._rearm = asyncio.Event()
        """Set when the second emptying's deadline moved (``_reregister`` waits on it)."""

    async def apply(
        self, config: Config, learnt: tuple[str, ...] = (), *, repair: bool = False
    ) -> None:
        """Build the plan for this host and apply it; raises ``RescueError``.

        ``learnt``: members learnt from member routes, beside the configured ones.
        ``repair``: our tables vanished under the running data path; they go back full at
        once (no warm phase, see ``rescue.kernel``)."""
        assert config.rescue is not None  # the core asks only when configured
        self._in_apply += 1
        try:
            facts = await self._kernel.host_facts(config.rescue)
            inherited: tuple[str, ...] = ()
            if self._plan is None and config.rescue.membership is not None:
                # A restarted sidecar knows no member yet, but its data path still rescues
                # the group's flows: keep the peers it finds until member routes (or their
                # hold-down) decide, instead of cutting them out before BGP is even up.
                installed = await self._kernel.read_installed()
                overlay = installed.overlays.get(config.rescue.device)
                found = {dst for _, dst in overlay.fdb} if overlay is not None else set()
                inherited = tuple(sorted(found - set(learnt)))
                learnt = (*learnt, *inherited)
            try:
                plan = build_plan(
                    config,
                    local_address=facts.local_address,
                    underlay_mtu=facts.underlay_mtu,
                    learnt=[ipaddress.ip_address(member) for member in learnt],
                    fabric_interfaces=facts.fabric_interfaces,
                )
            except ValueError as error:  # a learnt group larger than the overlay range
                raise RescueError(f"rescue plan: {error}") from None
            for warning in mtu_warnings(plan):
                log.warning("rescue_mtu", warning=warning)
            report = await self._kernel.apply(plan, warm=not repair)
        finally:
            self._in_apply -= 1
        self._config, self._plan, self._error = config, plan, None
        self._learnt = learnt
        self._applied_at = time.time()
        self._schedule_reregistration(plan, report)
        log.info(
            "rescue_applied",
            member=str(plan.me.address),
            peers=[str(peer.address) for peer in plan.peers],
            changed=report.changed,
            steps=list(report.link_steps),
            tables=list(report.tables_written),
            adopted=report.adopted,
            registrations_forgotten=list(report.registrations_forgotten),
        )
        if self._on_applied is not None:
            peers = tuple(str(peer.address) for peer in plan.peers)
            self._on_applied(str(plan.me.address), inherited, peers)
        await self._read_counters()

    def _schedule_reregistration(self, plan: RescuePlan, report: ApplyReport) -> None:
        if plan.directory is None:
            self._reregistration.cancel()
        elif report.registrations_forgotten:
            now = asyncio.get_running_loop().time()
            self._reregistration.emptied(now, plan.directory.reregister_after)
        self._rearm.set()

    def sync(self, config: Config, learnt: tuple[str, ...] = ()) -> None:
        """Apply ``config``'s plan soon (a reload, learnt members); failures are logged,
        shown, and retried at the next counter reading."""
        self._latest = self._wanted = (config, learnt)
        self._repairing = False
        self._generation += 1
        if self._applying is None or self._applying.done():
            self._applying = asyncio.get_running_loop().create_task(self._apply_latest())

    async def _apply_latest(self) -> None:
        try:
            await self._apply_queue()
        finally:
            if self._recheck and self._plan is not None:
                # Changed while we applied: our own writes, or someone else's. Look.
                self._recheck = False
                self._checking = asyncio.get_running_loop().create_task(self.check())

    async def _apply_queue(self) -> None:
        while self._latest is not None:
            (config, learnt), self._latest = self._latest, None
            repair, self._repairing = self._repairing, False
            try:
                await self.apply(config, learnt, repair=repair)
            except RescueError as error:
                self._not_applied(str(error))
            except Exception as error:  # a bug in the shell: see below
                # Nobody awaits this task: without this, a defect in the shell would end
                # it silently and leave the data path unapplied with no error shown.
                log.exception("rescue_apply_crashed")
                self._not_applied(f"{type(error).__name__}: {error}")

    def _not_applied(self, error: str) -> None:
        """Shown, logged and retried at the next counter reading."""
        self._error = error
        log.error("rescue_not_applied", error=error)
        if self._metrics is not None:
            counters = self._counters or RescueCounters()
            self._metrics.rescue_counters(_for_metrics(counters, installed=False))

    def forget(self) -> None:
        """The config no longer names a group: stop reporting (the data path stays)."""
        self._config = self._plan = self._counters = None
        self._error, self._wanted = None, None
        self._generation += 1
        self._reregistration.cancel()
        self._rearm.set()
        if self._metrics is not None:
            self._metrics.rescue_counters(None)

    async def run(self) -> None:
        """Read the counters while rescue is configured; repair drift when nftables says
        our tables changed, and every ``DRIFT_CHECKS`` readings anyway."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._watch())
            group.create_task(self._reregister())
            readings = 0
            while True:
                await asyncio.sleep(COUNTER_INTERVAL)
                if self._plan is None:
                    continue
                readings += 1
                if self._error is not None and self._wanted is not None and not self._busy():
                    # A failed apply (a learnt member, a reload) is retried with the newest
                    # plan: the data path would miss a member until the drift check.
                    self.sync(*self._wanted)
                await self._read_counters()
                if readings % DRIFT_CHECKS == 0:
                    await self.check(retry=True)

    async def _reregister(self) -> None:
        """Empty ``registered`` once more when ``Reregistration`` says so."""
        loop = asyncio.get_running_loop()
        while True:
            self._rearm.clear()
            deadline = self._reregistration.deadline
            if deadline is None:
                await self._rearm.wait()
                continue
            if deadline > loop.time():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rearm.wait(), deadline - loop.time())
                continue
            if self._reregistration.expire(loop.time()) and self._plan is not None:
                await self._forget_registrations(self._plan)

    async def _forget_registrations(self, plan: RescuePlan) -> None:
        # Not held back by an apply under way: if it moves buckets again it empties the
        # set itself and sets a new deadline; if not, emptying it now is what we want.
        try:
            families = await self._kernel.forget_registrations(plan)
        except RescueError as error:
            log.warning("rescue_reregister_failed", error=str(error))
            return
        log.info("rescue_registrations_forgotten", families=list(families))

    async def _watch(self) -> None:
        feed = self._changes()
        try:
            feed.open()
        except OSError as error:
            log.warning("rescue_watch_unavailable", error=str(error), fallback_seconds=30)
            return
        try:
            while True:
                try:
                    change = await feed.changed()
                except OSError as error:
                    log.warning("rescue_watch_failed", error=str(error), fallback_seconds=30)
                    return
                if self._plan is not None:
                    log.debug("rescue_tables_changed", deleted=sorted(change.deleted))
                    if change.deleted:
                        await self._restore(change.deleted)
                    await self.check()
        finally:
            feed.close()

    async def check(self, *, retry: bool = False) -> None:
        """Compare the kernel with the plan last applied, and re-apply it if they differ.

        Nothing is queued if an apply is under way or a newer config arrived meanwhile:
        the comparison was with a stale plan (the apply under way checks again after).
        After a failed apply, only the slow periodic check (``retry``) tries again, so a
        broken ``nft`` does not turn every notification into another failing apply.
        """
        if self._busy():
            self._recheck = True
            return
        if self._plan is None or self._config is None or (self._error and not retry):
            return
        generation, plan, config = self._generation, self._plan, self._config
        try:
            in_sync = await self._kernel.in_sync(plan)
        except RescueError as error:
            log.warning("rescue_state_unreadable", error=str(error))
            return
        if in_sync:
            return
        if self._busy() or generation != self._generation:
            self._recheck = True
            return
        log.warning("rescue_drift", action="re-applying the plan")
        self.sync(*(self._wanted or (config, self._learnt)))
        self._repairing = True

    async def _restore(self, families: frozenset[str]) -> None:
        """Our tables were deleted (``flush ruleset``): write them back before anything is
        read, so the gap is one ``nft -f`` long; ``check`` then does the rest."""
        plan = self._plan
        if plan is None or self._busy() or self._error is not None:
            return
        try:
            report = await self._kernel.restore(plan, families)
        except RescueError as error:
            log.warning("rescue_restore_failed", error=str(error))
            return
        log.warning("rescue_restored", tables=list(report.tables_written), adopted=report.adopted)

    def _busy(self) -> bool:
        return self._in_apply > 0 or (self._applying is not None and not self._applying.done())

    async def close(self) -> None:
        """Wait for an apply under way (the data path itself stays installed)."""
        while pending := self._pending():
            await asyncio.gather(*pending, return_exceptions=True)

    def _pending(self) -> list[asyncio.Task[None]]:
        tasks = (self._applying, self._checking)
        return [task for task in tasks if task is not None and not task.done()]

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
        try:
            self._counters = await self._kernel.counters()
        except RescueError as error:
            log.warning("rescue_counters_unreadable", error=str(error))
            return
        if self._metrics is not None:
            self._metrics.rescue_counters(_for_metrics(self._counters, installed=True))


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
        dropped={
            "budget": counters.blind_limited.packets,
            "source_budget": counters.blind_source_limited.packets,
            "set_full": counters.blind_refused.packets,
            "claim_refused": counters.claims_refused.packets,
            "icmp_budget": counters.icmp_limited.packets,
        },
    )
