"""The supervisor: wires probes, the pure core and the ExaBGP driver together.

Data flows one way. Probe tasks, the address watcher, the drain workers, the driver's
session callback and operator requests (``Control``) all put inputs on one queue; the
supervisor, the only owner of health, drain and dampening state, applies each input to
the pure state machines, recomputes the desired routes with ``policy`` and hands them to
the driver, which owns everything about ExaBGP. Timed state (drain phases, dampening)
reports its next deadline and the supervisor wakes up for it: time is an argument of
the core, never read inside it.

Shutdown (SIGTERM/SIGINT): withdraw everything, wait for ExaBGP's acks, remove addresses
we added, stop ExaBGP, exit 0, all within about two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from anycast_announcer import __version__
from anycast_announcer.checks import Probe, Prober, ProbeResult
from anycast_announcer.config import (
    Config,
    ConfigError,
    PrefixConfig,
    ServiceConfig,
    config_warnings,
    load_config,
)
from anycast_announcer.connections import count_established
from anycast_announcer.dampening import PrefixDampening
from anycast_announcer.drain import DrainPhase, PrefixDrain
from anycast_announcer.exabgp.driver import ExabgpDriver
from anycast_announcer.health import Health, ServiceHealth
from anycast_announcer.hooks import run_hook
from anycast_announcer.http import TokenFileError
from anycast_announcer.localaddr import AddressBook, AddressError, NetlinkAddresses
from anycast_announcer.logging import configure_logging
from anycast_announcer.metrics import Metrics
from anycast_announcer.policy import (
    PrefixDecision,
    apply_operations,
    decide_prefix,
    desired_routes,
)
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import (
    ControlResult,
    ExabgpStatus,
    PeerStatus,
    PrefixStatus,
    ProbeStatus,
    ServiceStatus,
    SidecarStatus,
)

__all__ = ["StartupError", "Supervisor", "run_sidecar"]

log = structlog.get_logger("anycast_announcer")

ADDRESS_POLL_INTERVAL = 1.0
CONNECTION_POLL_INTERVAL = 0.5
WITHDRAW_ACK_TIMEOUT = 1.2
"""Budget for ExaBGP to acknowledge the withdrawals at shutdown (the exit budget is 2 s)."""
RESULTS_KEPT = 10
MAX_BATCH = 1000
"""Inputs applied before one recompute; bounds the time between two route updates."""


class StartupError(Exception):
    """The sidecar cannot start as configured (the message says why, for the operator)."""


class MetricsSink(Protocol):
    """What the supervisor reports to metrics (``anycast_announcer.metrics.Metrics``)."""

    def probe_started(self, lag: float) -> None: ...
    def probe_finished(self, service: str, ok: bool, latency: float, reason: str) -> None: ...
    def service_changed(self, service: str, up: bool) -> None: ...
    def prefix_changed(self, prefix: str, announced: bool) -> None: ...
    def peer_changed(self, peer: str, up: bool) -> None: ...
    def exabgp_restarted(self) -> None: ...


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe finished."""

    service: str
    result: ProbeResult
    at: float
    """Wall-clock time, for operators."""


@dataclass(frozen=True, slots=True)
class SessionChange:
    """A BGP session went up or down."""

    peer: str
    up: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AddressChange:
    """A prefix's address appeared on or left its interface."""

    prefix: str
    present: bool


@dataclass(frozen=True, slots=True)
class DrainFileChange:
    """The drain file appeared or disappeared."""

    present: bool


@dataclass(frozen=True, slots=True)
class HookFinished:
    """A prefix's drain hook returned."""

    prefix: str
    ok: bool
    outcome: str


@dataclass(frozen=True, slots=True)
class ConnectionsCounted:
    """Established connections to a draining prefix's ports."""

    prefix: str
    count: int


@dataclass(slots=True)
class ControlRequest:
    """An operator's request; the supervisor answers through ``reply``."""

    action: str
    prefixes: list[str] | None
    reason: str
    reply: asyncio.Future[ControlResult] = field(repr=False)


class Lifecycle(enum.Enum):
    """Inputs about the supervisor itself."""

    STOP = "stop"
    DRIVER_ENDED = "driver_ended"


Input = (
    ProbeOutcome
    | SessionChange
    | AddressChange
    | DrainFileChange
    | HookFinished
    | ConnectionsCounted
    | ControlRequest
    | Lifecycle
)


@dataclass(slots=True)
class _ServiceRecord:
    machine: ServiceHealth
    results: deque[ProbeStatus]
    last_change_at: float | None = None
    last_change_reason: str | None = None


@dataclass(slots=True)
class _PeerRecord:
    up: bool = False
    last_change_at: float | None = None
    last_change_reason: str | None = None


class Supervisor:
    """Owns health, drain and dampening state; the single consumer of the input queue."""

    def __init__(
        self,
        config: Config,
        probe: Probe,
        addresses: AddressBook,
        driver_factory: Callable[[Callable[[str, bool, str], None]], ExabgpDriver],
        *,
        config_path: str = "",
        metrics: MetricsSink | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self._probe = probe
        self._addresses = addresses
        self._metrics = metrics
        self._inputs: asyncio.Queue[Input] = asyncio.Queue()
        self.driver = driver_factory(self._on_session)
        self.started_at = time.time()
        self.config_loaded_at = self.started_at
        self.last_reload_error: str | None = None
        self.services: dict[str, _ServiceRecord] = {}
        self.address_present: dict[str, bool] = {}
        self.peers: dict[str, _PeerRecord] = {}
        self.decisions: dict[str, PrefixDecision] = {}
        self.routes: dict[RouteKey, Route] = {}
        """The routes last handed to the driver; /status shows exactly these."""
        self.drains: dict[str, PrefixDrain] = {}
        self.dampening: dict[str, PrefixDampening] = {}
        self._health_announce: dict[str, bool] = {}
        self._drain_file_present = False
        self._added_addresses: list[PrefixConfig] = []
        self._probe_tasks: dict[str, tuple[ServiceConfig, asyncio.Task[None]]] = {}
        self._drain_workers: dict[str, asyncio.Task[None]] = {}
        self._adopt(config)

    # -- configuration -----------------------------------------------------------------

    def _adopt(self, config: Config) -> None:
        """Make ``config`` current, keeping the state of what did not change."""
        self.config = config
        old_services = self.services
        self.services = {}
        for service in config.services:
            previous = old_services.get(service.name)
            machine = ServiceHealth(service.name, service.rise, service.fall)
            record = _ServiceRecord(machine, deque(maxlen=RESULTS_KEPT))
            if previous is not None:
                # A reload must not flap a healthy service: keep its state, and its streak
                # too when nothing about the probe itself changed.
                machine.state = previous.machine.state
                if (previous.machine.rise, previous.machine.fall) == (service.rise, service.fall):
                    machine.successes = previous.machine.successes
                    machine.failures = previous.machine.failures
                record.results = previous.results
                record.last_change_at = previous.last_change_at
                record.last_change_reason = previous.last_change_reason
            self.services[service.name] = record
        peers = {str(peer.address) for peer in config.bgp.peers}
        self.peers = {p: self.peers.get(p, _PeerRecord()) for p in sorted(peers)}
        names = [str(prefix.prefix) for prefix in config.prefixes]
        self.drains = {name: self.drains.get(name) or PrefixDrain(config.drain) for name in names}
        for drain in self.drains.values():
            drain.configure(config.drain)
        self.dampening = {
            name: self.dampening.get(name) or PrefixDampening(prefix.dampening)
            for name, prefix in zip(names, config.prefixes, strict=True)
        }
        for name, prefix in zip(names, config.prefixes, strict=True):
            self.dampening[name].configure(prefix.dampening)
        self.decisions = {n: d for n, d in self.decisions.items() if n in self.drains}
        self.address_present = {n: p for n, p in self.address_present.items() if n in self.drains}

    # -- inputs --------------------------------------------------------------------------

    def _on_session(self, peer: str, up: bool, reason: str) -> None:
        self._inputs.put_nowait(SessionChange(peer, up, reason))

    async def _probe_loop(self, service: ServiceConfig, offset: float) -> None:
        """Probe on a fixed schedule; a late probe skips missed slots instead of bursting."""
        loop = asyncio.get_running_loop()
        due = loop.time() + offset
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._metrics:
                self._metrics.probe_started(loop.time() - due)
            result = await self._probe.probe(service.check, service.timeout)
            self._inputs.put_nowait(ProbeOutcome(service.name, result, time.time()))
            due += service.interval
            now = loop.time()
            if due < now:
                due += service.interval * ((now - due) // service.interval + 1)

    def _start_probes(self) -> None:
        """One task per service; unchanged services keep theirs across reloads."""
        loop = asyncio.get_running_loop()
        wanted = {service.name: service for service in self.config.services}
        for name, (spec, task) in list(self._probe_tasks.items()):
            if wanted.get(name) != spec:
                task.cancel()
                del self._probe_tasks[name]
        count = len(wanted)
        for index, service in enumerate(self.config.services):
            if service.name in self._probe_tasks:
                continue
            # Spread the probes evenly over the interval: with the first probes bunched,
            # 2,000 services probed in the same 100 ms every second and ran late (schedule
            # lag p99 135 ms at a third of a core). Start-up waits at most one interval.
            offset = service.interval * index / max(count, 1)
            task = loop.create_task(self._probe_loop(service, offset))
            self._probe_tasks[service.name] = (service, task)

    async def _watch_loop(self) -> None:
        """Addresses on their interfaces, and the drain file."""
        while True:
            for prefix in self.config.prefixes:
                name = str(prefix.prefix)
                present = await self._addresses.present(prefix.interface, prefix.prefix)
                if self.address_present.get(name) != present:
                    self._inputs.put_nowait(AddressChange(name, present))
            drain_file = self.config.drain.drain_file
            # A stat on a local path: cheap enough for the loop, once a second.
            present = drain_file is not None and os.path.exists(drain_file)  # noqa: ASYNC240
            if present != self._drain_file_present:
                self._inputs.put_nowait(DrainFileChange(present))
            await asyncio.sleep(ADDRESS_POLL_INTERVAL)

    async def _drain_worker(self, prefix: PrefixConfig) -> None:
        """Run the hook, then report connection counts until cancelled."""
        name = str(prefix.prefix)
        hook = self.config.drain.hook
        if hook is not None:
            ok, outcome = await run_hook(hook, self.config.drain.hook_timeout)
            self._inputs.put_nowait(HookFinished(name, ok, outcome))
        ports = self._drain_ports(prefix)
        address = str(prefix.prefix.network_address)
        while True:
            try:
                count = await asyncio.to_thread(count_established, address, ports)
            except Exception as error:  # netlink trouble must not stall a drain
                # Counting failed: the drain falls back to its connection timeout.
                log.warning("connection_count_failed", prefix=name, error=repr(error))
            else:
                self._inputs.put_nowait(ConnectionsCounted(name, count))
            await asyncio.sleep(CONNECTION_POLL_INTERVAL)

    def _drain_ports(self, prefix: PrefixConfig) -> list[int]:
        if prefix.ports is not None:
            return list(prefix.ports)
        ports = []
        for name in prefix.services:
            check = self.config.service(name).check
            if check.type == "tcp":
                ports.append(check.port)
        return ports

    # -- the decision step ---------------------------------------------------------------

    def apply(self, item: Input, now: float) -> None:
        """Apply one input to the state machines, then recompute the desired routes."""
        self.apply_batch([item], now)

    def apply_batch(self, items: list[Input], now: float) -> None:
        """Apply queued inputs in order, then recompute once if any of them mattered.

        With a thousand services, results arrive in bursts; recomputing every prefix
        after each one made start-up take seconds, and nearly every probe result changes
        nothing (the service was up and stays up). Recompute depends only on the state the
        inputs leave behind, so skipping it when no state moved changes no outcome.
        """
        changed = False
        for item in items:
            changed = self._ingest(item, now) or changed
        if changed:
            self.recompute(now)

    def _ingest(self, item: Input, now: float) -> bool:
        """Apply one input; whether it changed anything a decision depends on."""
        if isinstance(item, ProbeOutcome):
            return self._apply_probe(item)
        if isinstance(item, SessionChange):
            record = self.peers.setdefault(item.peer, _PeerRecord())
            if record.up == item.up:
                return False
            record.up = item.up
            record.last_change_at = time.time()
            record.last_change_reason = item.reason
            if self._metrics:
                self._metrics.peer_changed(item.peer, item.up)
            return True
        if isinstance(item, AddressChange):
            self.address_present[item.prefix] = item.present
            log.info("address_changed", prefix=item.prefix, present=item.present)
            return True
        if isinstance(item, DrainFileChange):
            self._drain_file_present = item.present
            log.info("drain_file_changed", path=self.config.drain.drain_file, present=item.present)
            if item.present:
                self._start_drains(None, "drain file present", now)
            else:
                self._undrain(None)
            return True
        if isinstance(item, HookFinished):
            drain = self.drains.get(item.prefix)
            if drain is None:
                return False
            log.info("drain_hook_finished", prefix=item.prefix, ok=item.ok, outcome=item.outcome)
            drain.hook_finished(now)
            return True
        if isinstance(item, ConnectionsCounted):
            drain = self.drains.get(item.prefix)
            if drain is None:
                return False
            if drain.connections != item.count:
                log.info("drain_connections", prefix=item.prefix, established=item.count)
            phase = drain.phase
            drain.connections_counted(now, item.count)
            return drain.phase is not phase
        if isinstance(item, ControlRequest):
            self._apply_control(item, now)
            return True
        return False  # Lifecycle inputs are the run loop's business

    def _apply_probe(self, item: ProbeOutcome) -> bool:
        record = self.services.get(item.service)
        if record is None:  # removed by a reload while the probe ran
            return False
        result = item.result
        record.results.append(ProbeStatus(item.at, result.ok, result.latency, result.reason))
        if self._metrics:
            self._metrics.probe_finished(item.service, result.ok, result.latency, result.reason)
        change = record.machine.observe(result.ok, result.reason)
        if change is None:
            return False
        record.last_change_at = item.at
        record.last_change_reason = change.reason
        log.info(
            "service_state_changed",
            service=change.service,
            old=change.old.value,
            new=change.new.value,
            reason=change.reason,
        )
        if self._metrics:
            self._metrics.service_changed(change.service, change.new is Health.UP)
        return True

    def recompute(self, now: float) -> None:
        """Decide every prefix and hand the resulting routes to the driver."""
        states = {name: record.machine.state for name, record in self.services.items()}
        for prefix in self.config.prefixes:
            name = str(prefix.prefix)
            health = decide_prefix(prefix, states, self.address_present.get(name, False))
            damp = self.dampening[name]
            if self._health_announce.get(name) and not health.announce:
                damp.record_withdrawal(now)
            self._health_announce[name] = health.announce
            drain = self.drains[name]
            drain.tick(now)
            release = damp.release_at()
            dampened_for = (
                max(0.0, release - now) if release is not None and damp.suppressed(now) else None
            )
            decision = apply_operations(health, drain.phase, drain.reason, dampened_for)
            previous = self.decisions.get(name)
            if previous is None or (previous.state, previous.graceful_shutdown) != (
                decision.state,
                decision.graceful_shutdown,
            ):
                log.info(
                    "prefix_state_changed",
                    prefix=name,
                    old=previous.state if previous else "unknown",
                    new=decision.state,
                    reason=decision.reason,
                    graceful_shutdown=decision.graceful_shutdown,
                )
                if self._metrics and (previous is None or previous.announce != decision.announce):
                    self._metrics.prefix_changed(name, decision.announce)
            self.decisions[name] = decision
            self._sync_drain_worker(prefix, drain)
        sessions_up = {peer for peer, record in self.peers.items() if record.up}
        self.routes = desired_routes(self.config, self.decisions, sessions_up)
        self.driver.set_desired(self.routes)

    def next_deadline(self) -> float | None:
        """The earliest moment timed state changes by itself."""
        deadlines = [d for d in (drain.deadline() for drain in self.drains.values()) if d]
        deadlines += [r for r in (damp.release_at() for damp in self.dampening.values()) if r]
        return min(deadlines) if deadlines else None

    def _sync_drain_worker(self, prefix: PrefixConfig, drain: PrefixDrain) -> None:
        name = str(prefix.prefix)
        wanted = drain.phase in (DrainPhase.HOOK, DrainPhase.WAITING_CONNECTIONS)
        worker = self._drain_workers.get(name)
        if wanted and worker is None:
            self._drain_workers[name] = asyncio.get_running_loop().create_task(
                self._drain_worker(prefix)
            )
        elif not wanted and worker is not None:
            worker.cancel()
            del self._drain_workers[name]

    # -- operator requests ---------------------------------------------------------------

    def _apply_control(self, request: ControlRequest, now: float) -> None:
        if request.action == "drain":
            result = self._start_drains(request.prefixes, request.reason, now)
        elif request.action == "undrain":
            result = self._undrain(request.prefixes)
        else:
            result = self._reload(now)
        if not request.reply.done():
            request.reply.set_result(result)

    def _select(self, prefixes: list[str] | None) -> tuple[list[str], list[str]]:
        if prefixes is None:
            return list(self.drains), []
        known: list[str] = []
        unknown: list[str] = []
        for prefix in prefixes:
            (known if prefix in self.drains else unknown).append(prefix)
        return known, unknown

    def _start_drains(self, prefixes: list[str] | None, reason: str, now: float) -> ControlResult:
        selected, unknown = self._select(prefixes)
        if unknown:
            return ControlResult(False, f"not a configured prefix: {', '.join(unknown)}")
        started = [name for name in selected if self.drains[name].start(now, reason)]
        for name in started:
            log.info("drain_started", prefix=name, reason=reason)
        self._persist_drains()
        return ControlResult(True, f"draining {len(started)} prefix(es)", tuple(started))

    def _undrain(self, prefixes: list[str] | None) -> ControlResult:
        selected, unknown = self._select(prefixes)
        if unknown:
            return ControlResult(False, f"not a configured prefix: {', '.join(unknown)}")
        ended = [name for name in selected if self.drains[name].undrain()]
        for name in ended:
            log.info("drain_ended", prefix=name)
        self._persist_drains()
        return ControlResult(True, f"undrained {len(ended)} prefix(es)", tuple(ended))

    def _reload(self, now: float) -> ControlResult:
        try:
            new = load_config(self.config_path)
        except ConfigError as error:
            self.last_reload_error = error.render()
            log.error("reload_rejected", problems=error.problems)
            return ControlResult(
                False, "invalid configuration, nothing changed:\n" + error.render()
            )
        self.last_reload_error = None
        if new == self.config:
            return ControlResult(True, "configuration unchanged")
        old = self.config
        notes = []
        self._adopt(new)
        self.config_loaded_at = time.time()
        self._start_probes()
        if (new.bgp, new.exabgp) != (old.bgp, old.exabgp):
            # ExaBGP reads its neighbors at start only: a BGP change restarts it, which
            # resets every session. Prefix, service and bandwidth changes do not.
            self.driver.reconfigure(new.bgp, new.exabgp)
            notes.append("bgp changed: ExaBGP restarted")
        if new.http != old.http:
            notes.append("http changes take effect at the next restart")
        if new.logging != old.logging:
            configure_logging(new.logging.format, new.logging.level)
        log.info("config_reloaded", path=self.config_path, notes=notes)
        return ControlResult(True, "; ".join(["reloaded", *notes]))

    def _persist_drains(self) -> None:
        path = self.config.drain.state_file
        if path is None:
            return
        state = {
            name: {"reason": drain.reason, "started_at": drain.started_at}
            for name, drain in self.drains.items()
            if drain.active and drain.reason != "drain file present"
        }
        target = Path(path)
        temporary = target.with_name(target.name + ".tmp")
        try:
            temporary.write_text(json.dumps({"drains": state}, indent=1), encoding="utf-8")
            temporary.replace(target)
        except OSError as error:
            log.error("drain_state_not_saved", path=path, error=str(error))

    def restore_drains(self, now: float) -> None:
        """Re-apply drains persisted by a previous run (they end only by undrain)."""
        path = self.config.drain.state_file
        if path is None or not os.path.exists(path):
            return
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            drains = data["drains"]
            if not isinstance(drains, dict):
                raise TypeError("'drains' is not a mapping")
        except (OSError, ValueError, KeyError, TypeError) as error:
            # Fail closed: announcing a server an operator drained is the worse mistake.
            raise StartupError(f"cannot read drain state {path}: {error}") from None
        for name, entry in drains.items():
            drain = self.drains.get(name)
            if drain is None or not isinstance(entry, dict):
                continue
            drain.restore_withdrawn(
                now,
                str(entry.get("reason") or "restored"),
                float(entry.get("started_at") or time.time()),
            )
            log.info("drain_restored", prefix=name, reason=drain.reason)

    # -- Control (the operator surface's view) -------------------------------------------

    async def _request(
        self, action: str, prefixes: list[str] | None, reason: str = ""
    ) -> ControlResult:
        reply: asyncio.Future[ControlResult] = asyncio.get_running_loop().create_future()
        self._inputs.put_nowait(ControlRequest(action, prefixes, reason, reply))
        return await reply

    async def drain(self, prefixes: list[str] | None, reason: str) -> ControlResult:
        """Start draining (all prefixes when None)."""
        return await self._request("drain", prefixes, reason or "operator request")

    async def undrain(self, prefixes: list[str] | None) -> ControlResult:
        """End drains (all when None)."""
        return await self._request("undrain", prefixes)

    async def reload(self) -> ControlResult:
        """Re-read the configuration file; an invalid one changes nothing."""
        return await self._request("reload", None)

    def ready(self) -> bool:
        """ExaBGP is connected and every service has been probed at least once."""
        return self.driver.snapshot().connected and all(
            record.results for record in self.services.values()
        )

    def status(self) -> SidecarStatus:
        """A snapshot of everything, for the API, the page and the CLI."""
        now = time.time()
        services = tuple(
            ServiceStatus(
                name=spec.name,
                check_type=spec.check.type,
                state=self.services[spec.name].machine.state.value,
                consecutive_successes=self.services[spec.name].machine.successes,
                consecutive_failures=self.services[spec.name].machine.failures,
                rise=spec.rise,
                fall=spec.fall,
                interval=spec.interval,
                last_results=tuple(self.services[spec.name].results),
                last_change_at=self.services[spec.name].last_change_at,
                last_change_reason=self.services[spec.name].last_change_reason,
            )
            for spec in self.config.services
        )
        routes = self.routes
        loop_now = asyncio.get_running_loop().time()
        prefixes = []
        for prefix in self.config.prefixes:
            name = str(prefix.prefix)
            decision = self.decisions.get(name) or PrefixDecision(name, False, "starting")
            drain = self.drains[name]
            prefixes.append(
                PrefixStatus(
                    prefix=name,
                    state=decision.state,
                    reason=decision.reason,
                    services=tuple(prefix.services),
                    require=prefix.require,
                    address_present=self.address_present.get(name, False),
                    interface=prefix.interface,
                    bandwidth_mbps=prefix.bandwidth_mbps,
                    drain_phase=drain.phase.value,
                    drain_reason=drain.reason,
                    established_connections=drain.connections,
                    dampening_penalty=round(self.dampening[name].penalty(loop_now), 1),
                    routes={
                        key.peer: {
                            "med": route.med,
                            "communities": list(route.communities),
                            "large_communities": list(route.large_communities),
                            "extended_communities": list(route.extended_communities),
                            "as_path": list(route.as_path),
                            "bandwidth_bps": route.bandwidth_bps,
                        }
                        for key, route in routes.items()
                        if key.prefix == name
                    },
                )
            )
        peers = tuple(
            PeerStatus(
                address=str(peer.address),
                peer_as=peer.peer_as,
                state="up" if self.peers[str(peer.address)].up else "down",
                last_change_at=self.peers[str(peer.address)].last_change_at,
                last_change_reason=self.peers[str(peer.address)].last_change_reason,
            )
            for peer in self.config.bgp.peers
        )
        snapshot = self.driver.snapshot()
        return SidecarStatus(
            version=__version__,
            started_at=self.started_at,
            uptime=now - self.started_at,
            config_path=self.config_path,
            config_loaded_at=self.config_loaded_at,
            last_reload_error=self.last_reload_error,
            services=services,
            prefixes=tuple(prefixes),
            peers=peers,
            exabgp=ExabgpStatus(
                pid=snapshot.pid,
                running=snapshot.pid is not None,
                connected=snapshot.connected,
                restarts=snapshot.restarts,
                routes_acknowledged=snapshot.acknowledged,
                routes_desired=snapshot.desired,
            ),
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; always withdraws before returning."""
        loop = asyncio.get_running_loop()
        await self._add_managed_addresses()
        self.restore_drains(loop.time())
        self.recompute(loop.time())  # everything starts withdrawn, and says so in the log
        driver_task = loop.create_task(self.driver.run())
        watcher = loop.create_task(self._watch_loop())
        # Stop requests and a driver that ended are inputs like any other, so the loop
        # waits on the queue alone: no tasks created and raced per input.
        driver_task.add_done_callback(lambda _: self._inputs.put_nowait(Lifecycle.DRIVER_ENDED))
        stopping = loop.create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._inputs.put_nowait(Lifecycle.STOP))
        try:
            self._start_probes()
            while True:
                deadline = self.next_deadline()
                try:
                    async with asyncio.timeout_at(deadline):
                        first = await self._inputs.get()
                except TimeoutError:
                    self.recompute(loop.time())  # a drain phase or dampening ran out
                    continue
                batch = [first]
                while not self._inputs.empty() and len(batch) < MAX_BATCH:
                    batch.append(self._inputs.get_nowait())
                if Lifecycle.DRIVER_ENDED in batch and not stop.is_set():
                    driver_task.result()  # a bug in the driver: surface it
                    raise RuntimeError("the ExaBGP driver stopped unexpectedly")
                if Lifecycle.STOP in batch:
                    break
                self.apply_batch(
                    [item for item in batch if not isinstance(item, Lifecycle)], loop.time()
                )
        finally:
            stopping.cancel()
            background = [
                watcher,
                *(task for _, task in self._probe_tasks.values()),
                *self._drain_workers.values(),
            ]
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await asyncio.shield(self._withdraw_and_stop(driver_task))

    async def _withdraw_and_stop(self, driver_task: asyncio.Task[None]) -> None:
        self.decisions = {
            name: PrefixDecision(name, False, "shutting down") for name in self.decisions
        }
        self.routes = {}
        self.driver.set_desired(self.routes)
        synced = True
        try:
            async with asyncio.timeout(WITHDRAW_ACK_TIMEOUT):
                await self.driver.wait_synced()
        except TimeoutError:
            synced = False
        log.info("withdrawn_all", acknowledged=synced)
        if synced:
            await self._remove_managed_addresses()
        else:
            log.warning("managed_addresses_kept", reason="withdrawal not acknowledged")
        await self.driver.stop()
        driver_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver_task

    async def _add_managed_addresses(self) -> None:
        for prefix in self.config.prefixes:
            if prefix.manage_address and not await self._addresses.present(
                prefix.interface, prefix.prefix
            ):
                await self._addresses.add(prefix.interface, prefix.prefix)
                self._added_addresses.append(prefix)
                log.info("address_added", prefix=str(prefix.prefix), interface=prefix.interface)

    async def _remove_managed_addresses(self) -> None:
        for prefix in self._added_addresses:
            try:
                await self._addresses.remove(prefix.interface, prefix.prefix)
            except AddressError as error:
                log.error("address_remove_failed", prefix=str(prefix.prefix), error=str(error))
            else:
                log.info("address_removed", prefix=str(prefix.prefix), interface=prefix.interface)
        self._added_addresses.clear()


HttpStarter = Callable[[Supervisor], contextlib.AbstractAsyncContextManager[Any]]


@contextlib.asynccontextmanager
async def _no_http(_: Supervisor) -> AsyncIterator[None]:
    yield None


async def _serve(
    config: Config, config_path: str, http: HttpStarter, metrics: MetricsSink | None
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with NetlinkAddresses() as addresses, Prober() as prober:
        supervisor = Supervisor(
            config,
            prober,
            addresses,
            lambda on_session: ExabgpDriver(
                config.bgp,
                config.exabgp,
                on_session,
                on_restart=metrics.exabgp_restarted if metrics else None,
            ),
            config_path=config_path,
            metrics=metrics,
        )

        reloads: set[asyncio.Task[ControlResult]] = set()

        def on_hangup() -> None:
            # The loop keeps only weak references to tasks: hold this one until it is done.
            reload = loop.create_task(supervisor.reload())
            reloads.add(reload)
            reload.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        log.info(
            "sidecar_started",
            version=__version__,
            services=len(config.services),
            prefixes=len(config.prefixes),
            peers=len(config.bgp.peers),
        )
        async with http(supervisor):
            await supervisor.run(stop)
    log.info("sidecar_stopped")


def run_sidecar(
    config: Config,
    config_path: str,
    http: HttpStarter | None = None,
    metrics: Metrics | None = None,
) -> int:
    """Run the sidecar until SIGTERM/SIGINT; the process exit code.

    By default the status API (``http:``) and Prometheus metrics come with it.
    """
    configure_logging(config.logging.format, config.logging.level)
    log.info("config_loaded", path=config_path)
    for warning in config_warnings(config):
        log.warning("config_warning", warning=warning)
    if metrics is None:
        metrics = Metrics()
    if http is None:
        http = _http_starter(config, metrics)
    try:
        asyncio.run(_serve(config, config_path, http, metrics))
    except (AddressError, StartupError, TokenFileError) as error:
        log.error("sidecar_failed", error=str(error))
        return 1
    except OSError as error:
        # At start-up: the API's port is taken, a socket path is in the way, no exabgp.
        log.error("sidecar_failed", error=str(error))
        return 1
    return 0


def _http_starter(config: Config, metrics: Metrics) -> HttpStarter:
    from anycast_announcer.http import serving

    def start(supervisor: Supervisor) -> contextlib.AbstractAsyncContextManager[Any]:
        return serving(supervisor, metrics, config.http)

    return start
