"""The supervisor: the thin asyncio shell around the decision core.

Data flows one way. Probe tasks, the watcher, drain workers, the driver's session
callback and operator requests (``Control``) all put inputs on one queue; the supervisor
takes them in batches, hands them to ``SidecarCore`` with the time, and performs the
effects the core returns: routes to the driver, tasks started and stopped, drains
written to disk, replies to callers, metrics. It decides nothing itself. Between inputs
it sleeps until the core's next deadline (``get_timer``).

Shutdown (SIGTERM/SIGINT): withdraw everything, wait for ExaBGP's acks, remove addresses
we added, send BFD AdminDown, stop ExaBGP, all within about two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import structlog

from anycast_announcer.checks import Probe
from anycast_announcer.config import BgpConfig, Config, ConfigError, ExabgpConfig, load_config
from anycast_announcer.core import Instant, SidecarCore
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    ConfigLoaded,
    ConfigRejected,
    DrainRequested,
    Input,
    PeerEndOfRib,
    PeerRoutesReceived,
    RescueApplied,
    SessionChanged,
    UndrainRequested,
)
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.exabgp.driver import (
    DriverSnapshot,
    EndOfRibCallback,
    RoutesCallback,
    SessionCallback,
)
from anycast_announcer.history import History
from anycast_announcer.historymodels import HistoryWindow, SidecarHistory
from anycast_announcer.http.token import TokenFileError
from anycast_announcer.localaddr import AddressBook
from anycast_announcer.logging import configure_logging
from anycast_announcer.metrics import BfdReading, RescueCounters
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import ControlResult, ExabgpStatus, SidecarStatus
from anycast_announcer.tasks import BackgroundTasks
from anycast_announcer.workers import Submit
from anycast_announcer.workers.addresses import ManagedAddresses
from anycast_announcer.workers.bfd import BfdKeeper
from anycast_announcer.workers.drains import DrainWorkers
from anycast_announcer.workers.persist import DrainStateWriter
from anycast_announcer.workers.probes import ProbeScheduler
from anycast_announcer.workers.rescue import RescueKeeper
from anycast_announcer.workers.watch import DrainFileWatch

__all__ = ["DetectionSource", "Driver", "MetricsSink", "Seams", "Supervisor"]

log = structlog.get_logger("anycast_announcer")

WITHDRAW_ACK_TIMEOUT = 1.2
"""Budget for ExaBGP to acknowledge the withdrawals at shutdown (the exit budget is 2 s)."""
MAX_BATCH = 1000
"""Inputs applied before one decision step; bounds the time between two route updates."""


class Driver(Protocol):
    """What the supervisor needs of the ExaBGP driver (``exabgp.driver.ExabgpDriver``)."""

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> None: ...
    async def wait_synced(self) -> None: ...
    def snapshot(self) -> DriverSnapshot: ...
    def reconfigure(self, bgp: BgpConfig, settings: ExabgpConfig) -> None: ...
    async def run(self) -> None: ...
    async def stop(self) -> None: ...


class _Lifecycle(enum.Enum):
    """Queue items about the supervisor itself, so the loop waits on the queue alone."""

    STOP = "stop"
    DRIVER_ENDED = "driver_ended"


class DetectionSource(Protocol):
    """The event sources (``workers.detection.Detection``): addresses, listeners..."""

    async def open(self, config: Config) -> None: ...
    async def configure(self, config: Config) -> None: ...
    def close(self) -> None: ...


class MetricsSink(Protocol):
    """Where the supervisor reports what the core observed (``metrics.Metrics``)."""

    def probe_started(self, lag: float) -> None: ...
    def record(self, effect: fx.Effect) -> None: ...
    def rescue_counters(self, counters: RescueCounters | None) -> None: ...


class _RescueTap:
    """Rescue's counter readings to the metrics and to the history, as they are read."""

    def __init__(self, metrics: MetricsSink | None, history: History) -> None:
        self._metrics = metrics
        self._history = history

    def rescue_counters(self, counters: RescueCounters | None) -> None:
        if self._metrics is not None:
            self._metrics.rescue_counters(counters)
        if counters is None:
            self._history.rescue_forgotten()
            return
        peers = counters.peers.values()
        self._history.rescue_counters(
            handed_over=sum(peer.packets_sent for peer in peers),
            rescued=sum(peer.packets_received for peer in peers),
            at=time.time(),
        )


@dataclass(frozen=True, slots=True)
class Seams:
    """Everything the supervisor talks to outside the process (tests put fakes here)."""

    probe: Probe
    addresses: AddressBook
    driver: Callable[[SessionCallback, RoutesCallback, EndOfRibCallback], Driver]
    """Builds the driver, given where it reports session changes, received routes and
    End-of-RIB markers."""
    detection: Callable[[Submit], DetectionSource]
    """Builds the event sources, given where they report."""


class Supervisor:
    """Feeds the core and performs its effects; the single consumer of the input queue."""

    def __init__(
        self,
        config: Config,
        seams: Seams,
        *,
        config_path: str = "",
        metrics: MetricsSink | None = None,
        restored: Iterable[PersistedDrain] = (),
        reload_checks: Iterable[Callable[[], None]] = (),
    ) -> None:
        self._inputs: asyncio.Queue[Input | _Lifecycle] = asyncio.Queue()
        self._metrics = metrics
        self._config_path = config_path
        self._reload_checks = tuple(reload_checks)
        self.core = SidecarCore(
            config, self._now(), logger=log, config_path=config_path, restored=list(restored)
        )
        self.driver = seams.driver(self._on_session, self._on_routes, self._on_end_of_rib)
        self._probes = ProbeScheduler(seams.probe, self.submit, metrics)
        self._drains = DrainWorkers(self.submit)
        self._detection = seams.detection(self.submit)
        self._drain_file = DrainFileWatch(self.submit, lambda: self.core.config)
        self._background = BackgroundTasks("background_task_failed", level="error")
        self._managed = ManagedAddresses(seams.addresses)
        # The supervisor owns the history: it is the one place every observation passes.
        self._history = History(time.time())
        self._rescue = RescueKeeper(
            _RescueTap(metrics, self._history),
            lambda member, kept, peers: self.submit(RescueApplied(member, kept, peers)),
        )
        self._bfd = BfdKeeper(self.submit)
        self._state_writer = DrainStateWriter()
        self._requests = itertools.count(1)
        self._replies: dict[int, asyncio.Future[ControlResult]] = {}

    # -- inputs ------------------------------------------------------------------------

    def submit(self, item: Input) -> None:
        """Queue an input for the next decision step."""
        self._inputs.put_nowait(item)

    def _on_session(self, peer: str, up: bool, reason: str) -> None:
        self.submit(SessionChanged(peer, up, reason))

    def _on_routes(
        self,
        peer: str,
        announced: tuple[tuple[str, tuple[str, ...]], ...],
        withdrawn: tuple[str, ...],
    ) -> None:
        self.submit(PeerRoutesReceived(peer, announced, withdrawn))

    def _on_end_of_rib(self, peer: str, family: str) -> None:
        self.submit(PeerEndOfRib(peer, family))

    @staticmethod
    def _now() -> Instant:
        return Instant(asyncio.get_running_loop().time(), time.time())

    # -- Control: the operator surface's view ------------------------------------------

    def status(self) -> SidecarStatus:
        """A snapshot of everything, for the API, the page and the CLI."""
        snapshot = self.driver.snapshot()
        exabgp = ExabgpStatus(
            pid=snapshot.pid,
            running=snapshot.pid is not None,
            connected=snapshot.connected,
            restarts=snapshot.restarts,
            routes_acknowledged=snapshot.acknowledged,
            routes_desired=snapshot.desired,
        )
        return self.core.status(self._now(), exabgp, self._rescue.status(), self._bfd.status())

    def bfd_reading(self) -> BfdReading | None:
        """The BFD sessions and transmit figures for /metrics; None while BFD is off."""
        figures = self._bfd.transmit_stats()
        if figures is None:
            return None
        worst, suppressed = figures
        return BfdReading(self._bfd.status(), worst, suppressed)

    def history(self, window: HistoryWindow) -> SidecarHistory:
        """The last hour or day: state changes, probes, rescued packets."""
        return self._history.snapshot(window, time.time())

    def ready(self) -> bool:
        """ExaBGP is connected, every service was probed, and the sidecar is sound."""
        return self.core.ready(self.driver.snapshot().connected)

    async def drain(self, prefixes: list[str] | None, reason: str) -> ControlResult:
        """Start draining (all prefixes when None)."""
        request = next(self._requests)
        selected = tuple(prefixes) if prefixes is not None else None
        return await self._ask(request, DrainRequested(request, selected, reason))

    async def undrain(self, prefixes: list[str] | None) -> ControlResult:
        """End drains (all when None)."""
        request = next(self._requests)
        selected = tuple(prefixes) if prefixes is not None else None
        return await self._ask(request, UndrainRequested(request, selected))

    async def reload(self) -> ControlResult:
        """Re-read the configuration file; an invalid one changes nothing."""
        request = next(self._requests)
        return await self._ask(request, await self.read_config(request))

    async def read_config(self, request: int | None) -> ConfigLoaded | ConfigRejected:
        """The config file (and what else a reload re-reads) as an input, off the loop."""
        try:
            config = await asyncio.to_thread(load_config, self._config_path)
            for check in self._reload_checks:
                await asyncio.to_thread(check)
        except ConfigError as error:
            return ConfigRejected(error.render(), request)
        except TokenFileError as error:
            return ConfigRejected(str(error), request)
        return ConfigLoaded(config, request)

    async def _ask(self, request: int, item: Input) -> ControlResult:
        reply: asyncio.Future[ControlResult] = asyncio.get_running_loop().create_future()
        self._replies[request] = reply
        self.submit(item)
        try:
            return await reply
        finally:
            self._replies.pop(request, None)

    # -- effects -----------------------------------------------------------------------

    def perform(self, effects: Iterable[fx.Effect]) -> None:
        """Carry out the core's effects, in order; observations go to the metrics and
        the history."""
        wall = time.time()
        for effect in effects:
            if self._steer_workers(effect) or self._do_io(effect):
                continue
            if self._metrics is not None:
                self._metrics.record(effect)
            self._history.observe(effect, wall)

    def _steer_workers(self, effect: fx.Effect) -> bool:
        """Routes to the driver, probes and drain workers; whether ``effect`` was one."""
        match effect:
            case fx.SyncRoutes():
                self.driver.set_desired(effect.routes)
            case fx.ScheduleProbes():
                self._probes.schedule(effect.services)
            case fx.ProbeCadence():
                self._probes.set_fast(effect.service, effect.fast)
            case fx.StartDrainWorker():
                self._drains.start(effect)
            case fx.StopDrainWorker():
                self._drains.stop(effect.prefix)
            case _:
                return False
        return True

    def _do_io(self, effect: fx.Effect) -> bool:
        """Files, replies, restarts and reconfiguration; whether ``effect`` was one."""
        match effect:
            case fx.PersistDrains():
                self._state_writer.save(effect.path, effect.drains)
            case fx.Reply():
                reply = self._replies.get(effect.request)
                if reply is not None and not reply.done():
                    reply.set_result(effect.result)
            case fx.RestartExabgp():
                self.driver.reconfigure(effect.bgp, effect.settings)
            case fx.ConfigApplied():
                self._background.spawn(self._detection.configure(effect.config))
            case fx.ConfigureLogging():
                configure_logging(effect.logging.format, effect.logging.level)
            case fx.SyncRescue():
                self._rescue.sync(effect.config, effect.learnt)
            case fx.SyncBfd():
                self._bfd.sync(effect.peers)
            case fx.RescueUnconfigured():
                self._rescue.forget()
            case _:
                return False
        return True

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; always withdraws before returning."""
        loop = asyncio.get_running_loop()
        try:
            await self._start()
        except BaseException:
            # Nothing was announced yet (the driver never ran): what the start added to
            # lo goes now, or the next start would find it there and never remove it.
            await self._probes.close()
            self._detection.close()
            await self._rescue.close()
            self._bfd.close()
            await self._managed.remove_added()
            await self._state_writer.flush()
            raise
        # Not among the watchers: BFD must keep beating until the routes are withdrawn.
        bfd_beat = loop.create_task(self._bfd.run())
        driver_task = loop.create_task(self.driver.run())
        watchers = [loop.create_task(self._drain_file.run()), loop.create_task(self._rescue.run())]
        try:
            await self._consume(stop, driver_task)
        finally:
            background = self._background.pending()
            for task in watchers:
                task.cancel()
            self._background.cancel()
            await asyncio.gather(*watchers, *background, return_exceptions=True)
            await self._rescue.close()
            self._detection.close()
            await self._probes.close()
            await self._drains.close()
            await asyncio.shield(self._withdraw_and_stop(driver_task, bfd_beat))

    async def _start(self) -> None:
        """Managed addresses, flow rescue, probes and event sources, all withdrawn."""
        await self._managed.add(self.core.config.prefixes)
        effects = self.core.start(self._now())  # everything starts withdrawn
        for effect in effects:
            # Flow rescue goes in before anything can be announced, so no flow the fabric
            # moves here is ever reset; a failure stops the start (RescueError).
            if isinstance(effect, fx.SyncRescue):
                await self._rescue.apply(effect.config, effect.learnt)
        self.perform(e for e in effects if not isinstance(e, fx.SyncRescue))
        await self._detection.open(self.core.config)

    async def _consume(self, stop: asyncio.Event, driver_task: asyncio.Task[None]) -> None:
        """The decision loop: wait for inputs (or the core's deadline), step, perform."""
        # Stop requests and a driver that ended are queue items like any other, so the
        # loop waits on the queue alone: no tasks created and raced per input.
        driver_task.add_done_callback(lambda _: self._inputs.put_nowait(_Lifecycle.DRIVER_ENDED))
        stopping = asyncio.get_running_loop().create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._inputs.put_nowait(_Lifecycle.STOP))
        try:
            while True:
                try:
                    async with asyncio.timeout_at(self.core.get_timer()):
                        first = await self._inputs.get()
                except TimeoutError:
                    self.perform(self.core.handle_timer(self._now()))
                    continue
                batch = [first]
                while not self._inputs.empty() and len(batch) < MAX_BATCH:
                    batch.append(self._inputs.get_nowait())
                if _Lifecycle.DRIVER_ENDED in batch and not stop.is_set():
                    driver_task.result()  # a bug in the driver: surface it
                    raise RuntimeError("the ExaBGP driver stopped unexpectedly")
                if _Lifecycle.STOP in batch:
                    return
                inputs = [item for item in batch if not isinstance(item, _Lifecycle)]
                self.perform(self.core.handle_all(inputs, self._now()))
        finally:
            stopping.cancel()

    async def _withdraw_and_stop(
        self, driver_task: asyncio.Task[None], bfd_beat: asyncio.Task[None]
    ) -> None:
        self.perform(self.core.shutdown(self._now()))
        synced = True
        try:
            async with asyncio.timeout(WITHDRAW_ACK_TIMEOUT):
                await self.driver.wait_synced()
        except TimeoutError:
            synced = False
        log.info("withdrawn_all", acknowledged=synced)
        if synced:
            await self._managed.remove_added()
        else:
            log.warning("managed_addresses_kept", reason="withdrawal not acknowledged")
        await self._state_writer.flush()
        # Withdrawn first, AdminDown after: FRR 8.4 drops BGP on AdminDown, unlike
        # RFC 5882 says, so AdminDown must never come before the routes are gone.
        bfd_beat.cancel()
        self._bfd.close()
        await self.driver.stop()
        driver_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver_task
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result(ControlResult(ok=False, message="the sidecar is shutting down"))
