"""The sidecar's decision core: every decision, no I/O (sans-IO, like aioquic's connection).

Theory of operation. ``SidecarCore`` owns all the state decisions depend on: each
service's rise/fall machine and recent results, each BGP session's state, which anycast
addresses are on their interfaces, each prefix's drain and dampening, and the
configuration. The shell feeds it inputs (``core.inputs``), each with the time as an
``Instant``, and performs the effects it returns (``core.effects``) in order:

    effects = core.handle(ProbeCompleted("web", result), now)
    effects = core.handle_timer(now)      # when now >= core.get_timer()

A step applies its inputs, then, if any of them changed something a decision depends
on, recomputes every prefix from scratch (``policy``): health decision, dampening and
drain overlaid, routes per established session. What changed comes out as effects:
the whole desired route set (``SyncRoutes``), drain workers to start or stop, drains to
persist, replies to operators, and observations for metrics. Logs are written here, as
stable event names. With learnt rescue membership, a start-up gate (``core.gate``) holds
the anycast routes back until the group is known and installed.

The core never runs an event loop, never reads a clock and never touches a file or a
socket: the shell parses the config file (``ConfigLoaded``), owns every task, and reads
the time. That is what lets the tests drive it synchronously, input by input, and
check its invariants with hypothesis.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from anycast_announcer import __version__
from anycast_announcer.config import BgpConfig, Config, PeerConfig, PrefixConfig, ServiceConfig
from anycast_announcer.config.rescue import GATE_TIMEOUT_DEFAULT
from anycast_announcer.core import effects as fx
from anycast_announcer.core import snapshot
from anycast_announcer.core.gate import StartGate
from anycast_announcer.core.inputs import (
    AddressChanged,
    BfdChanged,
    ConfigLoaded,
    ConfigRejected,
    ConnectionsCounted,
    DrainFileChanged,
    DrainHookFinished,
    DrainRequested,
    Input,
    Instant,
    PeerEndOfRib,
    PeerRoutesReceived,
    ProbeCompleted,
    RescueApplied,
    ServiceFailed,
    SessionChanged,
    UndrainRequested,
)
from anycast_announcer.core.logs import Logger
from anycast_announcer.core.members import HostRoutesIn, LearntMembers
from anycast_announcer.core.records import RESULTS_KEPT, PeerRecord, ServiceRecord
from anycast_announcer.dampening import PrefixDampening
from anycast_announcer.drain import DrainOrigin, DrainPhase, PrefixDrain
from anycast_announcer.drainstate import PersistedDrain
from anycast_announcer.endpoints import check_port
from anycast_announcer.health import Health, HealthChange, ServiceHealth
from anycast_announcer.policy import (
    PrefixDecision,
    apply_operations,
    decide_prefix,
    desired_routes,
)
from anycast_announcer.results import ProbeCategory, ProbeResult
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.status import (
    BfdStatus,
    ControlResult,
    ExabgpStatus,
    PrefixStatus,
    ProbeStatus,
    RescueStatus,
    SidecarFaultStatus,
    SidecarStatus,
)

__all__ = ["RESULTS_KEPT", "CoreClosedError", "Logger", "SidecarCore"]

_T = TypeVar("_T")

_DRAINED_BY = {
    DrainOrigin.OPERATOR: " (by an operator)",
    DrainOrigin.DRAIN_FILE: " (by the drain file)",
    DrainOrigin.RESTORED: " (by an operator, before the last restart)",
}
"""Who drained, in the words of the prefix changes the history keeps."""

_WORKER_PHASES = (DrainPhase.HOOK, DrainPhase.WAITING_CONNECTIONS)
"""Drain phases that need a worker (the hook, then connection counts)."""


class CoreClosedError(RuntimeError):
    """An input reached the core after ``shutdown``: a bug in the shell, not an event."""


class SidecarCore:
    """Owns health, sessions, addresses, drains and dampening; decides the routes."""

    def __init__(
        self,
        config: Config,
        now: Instant,
        *,
        logger: Logger,
        config_path: str = "",
        restored: Sequence[PersistedDrain] = (),
    ) -> None:
        # Injected, as aioquic injects its logger: the core configures no logging itself.
        self._log = logger
        self._closed = False
        self._config = config
        self._config_path = config_path
        self._started_at = now.wall
        self._config_loaded_at = now.wall
        self._last_reload_error: str | None = None
        self._fault: SidecarFaultStatus | None = None
        self._faulty_services: set[str] = set()
        """Services whose latest probe could not run for lack of our own resources."""
        self._services: dict[str, ServiceRecord] = {}
        self._peers: dict[str, PeerRecord] = {}
        self._address_present: dict[str, bool] = {}
        self._drains: dict[str, PrefixDrain] = {}
        self._dampening: dict[str, PrefixDampening] = {}
        self._health_announce: dict[str, bool] = {}
        self._decisions: dict[str, PrefixDecision] = {}
        self._phases: dict[str, DrainPhase] = {}
        self._routes: dict[RouteKey, Route] = {}
        self._routes_sent = False
        self._workers: set[str] = set()
        self._drain_file_present = False
        self._effects: list[fx.Effect] = []
        self._members: LearntMembers | None = None
        """Rescue membership learnt from BGP (rescue.membership), else None."""
        self._routes_in = HostRoutesIn()
        """Host routes our peers carry (ExaBGP's receive API), for membership."""
        self._gate: StartGate | None = None
        """The anycast prefixes' start-up gate; None while membership was never on."""
        if LearntMembers.wanted(config):
            self._gate = StartGate(True, _gate_timeout(config), now, logger)
        self._rescue_member: str | None = None
        """This server's member address, from the last rescue apply."""
        self._rescue_peers: frozenset[str] | None = None
        """The peers the last applied rescue plan holds; None before the first apply."""
        self._adopt(config, now)
        self._restore(restored, now)

    # -- reading -----------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration in force."""
        return self._config

    @property
    def decisions(self) -> dict[str, PrefixDecision]:
        """Each prefix's latest decision (a copy)."""
        return dict(self._decisions)

    @property
    def routes(self) -> dict[RouteKey, Route]:
        """The route set last handed out in ``SyncRoutes`` (a copy)."""
        return dict(self._routes)

    @property
    def closed(self) -> bool:
        """Whether ``shutdown`` ran: the core then refuses every input (h11's CLOSED)."""
        return self._closed

    def get_timer(self) -> float | None:
        """The earliest monotonic time at which timed state changes by itself."""
        if self._closed:
            return None
        deadlines = [d for d in (drain.deadline() for drain in self._drains.values()) if d]
        deadlines += [r for r in (damp.release_at() for damp in self._dampening.values()) if r]
        if self._members is not None and (held := self._members.next_deadline()) is not None:
            deadlines.append(held)
        if self._gate is not None and (gate := self._gate.deadline()) is not None:
            deadlines.append(gate)
        return min(deadlines) if deadlines else None

    def ready(self, exabgp_connected: bool) -> bool:
        """ExaBGP is connected, every service was probed, and the sidecar is sound."""
        return (
            exabgp_connected
            and self._fault is None
            and all(record.results for record in self._services.values())
        )

    def status(
        self,
        now: Instant,
        exabgp: ExabgpStatus,
        rescue: RescueStatus | None = None,
        bfd: Mapping[str, BfdStatus] | None = None,
    ) -> SidecarStatus:
        """A snapshot of everything, for the API, the page and the CLI.

        ExaBGP, flow rescue and the BFD sessions are process, kernel and network state
        the shell owns; it passes their latest reading in.
        """
        bfd = bfd or {}
        config = self._config
        return SidecarStatus(
            version=__version__,
            started_at=self._started_at,
            uptime=now.wall - self._started_at,
            config_path=self._config_path,
            config_loaded_at=self._config_loaded_at,
            last_reload_error=self._last_reload_error,
            sidecar_fault=self._fault,
            services=tuple(
                snapshot.service_status(spec, self._services[spec.name]) for spec in config.services
            ),
            prefixes=tuple(self._prefix_status(prefix, now) for prefix in config.prefixes),
            peers=tuple(
                snapshot.peer_status(
                    peer, self._peers[str(peer.address)], bfd.get(str(peer.address))
                )
                for peer in config.bgp.peers
            ),
            exabgp=exabgp,
            rescue=self._rescue_status(rescue, now),
        )

    def _rescue_status(self, rescue: RescueStatus | None, now: Instant) -> RescueStatus | None:
        """The shell's data path reading, with the membership learnt here."""
        if rescue is None or self._members is None:
            return rescue
        announced = any(key.prefix.startswith(f"{rescue.member}/") for key in self._routes)
        membership = self._members.status(now.monotonic, announced)
        if self._gate is not None:
            membership = membership.model_copy(update={"gate": self._gate.status(now)})
        return rescue.model_copy(update={"membership": membership})

    def _prefix_status(self, prefix: PrefixConfig, now: Instant) -> PrefixStatus:
        name = str(prefix.prefix)
        return snapshot.prefix_status(
            prefix,
            self._decisions.get(name) or PrefixDecision(name, False, "starting"),
            self._drains[name],
            penalty=self._dampening[name].penalty(now.monotonic),
            address_present=self._address_present.get(name, False),
            routes=[route for key, route in self._routes.items() if key.prefix == name],
        )

    # -- the decision step -------------------------------------------------------------

    def start(self, now: Instant) -> list[fx.Effect]:
        """The first step: flow rescue in place, probes to schedule, every session down,
        every prefix decided (withdrawn)."""
        self._refuse_if_closed("start")
        if self._config.rescue is not None:
            self._emit(fx.SyncRescue(self._config, self._learnt()))
        self._emit(fx.ScheduleProbes(tuple(self._config.services)))
        self._emit(fx.SyncBfd(_bfd_peers(self._config)))
        self._gate_moved()
        for peer in self._peers:
            self._emit(fx.PeerChanged(peer, False, "not established yet"))
        self._recompute(now)
        return self._take()

    def handle(self, item: Input, now: Instant) -> list[fx.Effect]:
        """Apply one input; the effects to perform."""
        return self.handle_all((item,), now)

    def handle_all(self, items: Iterable[Input], now: Instant) -> list[fx.Effect]:
        """Apply inputs in order, then recompute once if any of them mattered.

        With a thousand services, results arrive in bursts and nearly every one changes
        nothing (the service was up and stays up); recomputing depends only on the state
        the inputs leave behind, so skipping it when no state moved changes no outcome.
        """
        self._refuse_if_closed("an input")
        changed = False
        for item in items:
            changed = self._ingest(item, now) or changed
        if changed:
            self._recompute(now)
        return self._take()

    def handle_timer(self, now: Instant) -> list[fx.Effect]:
        """A deadline from ``get_timer`` passed: advance drains, dampening, hold-downs."""
        self._refuse_if_closed("a timer")
        if self._members is not None and self._members.expire(now.monotonic):
            self._sync_rescue()
        if self._gate is not None and self._gate.expire(now):
            self._gate_moved()
        self._recompute(now)
        return self._take()

    def shutdown(self, now: Instant) -> list[fx.Effect]:
        """Withdraw everything (the shell then waits for the acknowledgements).

        The core is closed from then on: an input or a timer raises ``CoreClosedError``,
        since nothing may announce a route again; a second shutdown returns nothing.
        """
        if self._closed:
            return []
        self._closed = True
        for name in self._decisions:
            self._decisions[name] = PrefixDecision(name, False, "shutting down")
        for prefix in sorted(self._workers):
            self._emit(fx.StopDrainWorker(prefix))
        self._workers.clear()
        self._routes = {}
        self._emit(fx.SyncRoutes({}))
        return self._take()

    def _refuse_if_closed(self, what: str) -> None:
        if self._closed:
            raise CoreClosedError(f"the core was shut down; {what} can no longer be applied")

    def _ingest(  # noqa: C901, PLR0911, PLR0912  # one case per input type
        self, item: Input, now: Instant
    ) -> bool:
        """Apply one input; whether it changed anything a decision depends on."""
        match item:
            case ProbeCompleted():
                return self._probe_completed(item, now)
            case ServiceFailed():
                return self._service_failed(item, now)
            case SessionChanged():
                return self._session_changed(item, now)
            case PeerRoutesReceived():
                return self._routes_received(item, now)
            case PeerEndOfRib():
                return self._end_of_rib(item, now)
            case RescueApplied():
                return self._rescue_applied(item, now)
            case BfdChanged():
                return self._bfd_changed(item, now)
            case AddressChanged():
                return self._address_changed(item)
            case DrainFileChanged():
                return self._drain_file_changed(item, now)
            case DrainHookFinished():
                return self._hook_finished(item, now)
            case ConnectionsCounted():
                return self._connections_counted(item, now)
            case DrainRequested():
                return self._reply(item.request, self._drain(item.prefixes, item.reason, now))
            case UndrainRequested():
                return self._reply(item.request, self._undrain(item.prefixes))
            case ConfigLoaded():
                return self._reply(item.request, self._reload(item.config, now))
            case ConfigRejected():
                return self._reply(item.request, self._reject_reload(item.message, now))

    def _reply(self, request: int | None, result: ControlResult) -> bool:
        if request is not None:
            self._emit(fx.Reply(request, result))
        return True

    # -- health, sessions, addresses ---------------------------------------------------

    def _probe_completed(self, item: ProbeCompleted, now: Instant) -> bool:
        record = self._services.get(item.service)
        if record is None:  # removed by a reload while the probe ran
            return False
        result = item.result
        record.results.append(
            ProbeStatus(at=now.wall, ok=result.ok, latency=result.latency, reason=result.reason)
        )
        self._emit(fx.ProbeRecorded(item.service, result))
        if result.category is ProbeCategory.SIDECAR:
            self._sidecar_fault(item.service, result, now)
            return False
        self._fault_clears(item.service)
        change = record.machine.observe(result.ok, f"probe: {result.reason}")
        if change is not None and change.new is Health.DOWN:
            self._emit(fx.Detected("probe", withdrew=True))
        self._pace(item.service, record)
        return self._record_change(record, change, "probe", now)

    def _pace(self, service: str, record: ServiceRecord) -> None:
        if record.fast != record.machine.changing:
            record.fast = record.machine.changing
            self._emit(fx.ProbeCadence(service, record.fast))

    def _service_failed(self, item: ServiceFailed, now: Instant) -> bool:
        record = self._services.get(item.service)
        if record is None:
            return False
        change = record.machine.fail_now(item.reason)
        self._emit(fx.Detected(item.source, withdrew=change is not None))
        self._pace(item.service, record)
        if change is None:
            self._log.info(
                "failure_event_ignored",
                service=item.service,
                source=item.source,
                reason=item.reason,
                state=record.machine.state.value,
            )
        return self._record_change(record, change, item.source, now)

    def _record_change(
        self, record: ServiceRecord, change: HealthChange | None, source: str, now: Instant
    ) -> bool:
        if change is None:
            return False
        record.last_change_at = now.wall
        record.last_change_reason = change.reason
        self._log.info(
            "service_state_changed",
            service=change.service,
            old=change.old.value,
            new=change.new.value,
            reason=change.reason,
            source=source,
        )
        self._emit(fx.ServiceChanged(change.service, change.new is Health.UP, change.reason))
        return True

    def _sidecar_fault(self, service: str, result: ProbeResult, now: Instant) -> None:
        """We could not probe: the service keeps its state, the fault is ours to report."""
        kind = result.resource or "other"
        if not self._faulty_services:
            self._log.error("sidecar_fault", kind=kind, service=service, detail=result.reason)
        self._faulty_services.add(service)
        self._fault = SidecarFaultStatus(kind=kind, detail=result.reason, at=now.wall)
        self._emit(fx.SidecarFaulted(kind, result.reason))

    def _fault_clears(self, service: str) -> None:
        if service not in self._faulty_services:
            return
        self._faulty_services.discard(service)
        if not self._faulty_services:
            self._fault = None
            self._log.info("sidecar_fault_cleared", service=service)

    def _session_changed(self, item: SessionChanged, now: Instant) -> bool:
        record = self._peers.setdefault(item.peer, PeerRecord())
        if record.up == item.up:
            return False
        was = record.effective_up
        record.up = item.up
        record.last_change_at = now.wall
        record.last_change_reason = item.reason
        if record.effective_up != was:
            self._emit(fx.PeerChanged(item.peer, record.effective_up, item.reason))
        if item.up and self._gate is not None:
            self._gate.session_up(now)
        if not item.up and self._members_session_down(item.peer, now):
            self._sync_rescue()
        return True

    def _bfd_changed(self, item: BfdChanged, now: Instant) -> bool:
        record = self._peers.get(item.peer)
        if record is None or record.bfd_up == item.up:
            return False  # a peer a reload removed, or no news
        was = record.effective_up
        record.bfd_up = item.up
        self._log.info("bfd_verdict_changed", peer=item.peer, up=item.up, reason=item.reason)
        if record.effective_up != was:
            record.last_change_at = now.wall
            record.last_change_reason = f"bfd: {item.reason}"
            self._emit(fx.PeerChanged(item.peer, record.effective_up, f"bfd: {item.reason}"))
        return True

    def _rescue_applied(self, item: RescueApplied, now: Instant) -> bool:
        """Our data path is in: our member route may go out; peers it kept are held down;
        the start-up gate may open."""
        self._rescue_member = item.member
        self._rescue_peers = frozenset(item.peers)
        if self._members is None:
            return False
        self._members.inherit(item.inherited, now.monotonic)
        announce_member = self._members.installed(item.member)
        return self._advance_gate(now) or announce_member

    def _end_of_rib(self, item: PeerEndOfRib, now: Instant) -> bool:
        """A peer sent its whole table: the learnt member set is known (start-up gate).

        Only from a configured peer whose session is established (ExaBGP reported it
        up), and only for the underlay's family: another family's End-of-RIB says
        nothing about member routes."""
        if self._gate is None or self._gate.open:
            return False
        refused = self._end_of_rib_refused(item)
        if refused is not None:
            self._log.info("end_of_rib_ignored", peer=item.peer, family=item.family, reason=refused)
            return False
        was = self._gate.state
        self._gate.end_of_rib(item.peer, item.family, now)
        if self._gate.state is was:
            return False
        self._gate_moved()
        self._advance_gate(now)
        return True  # the prefixes' reason names the gate's state

    def _end_of_rib_refused(self, item: PeerEndOfRib) -> str | None:
        """Why an End-of-RIB says nothing about our member routes; None if it does."""
        record = self._peers.get(item.peer)
        if record is None:
            return "not a configured peer"
        if not record.up:
            return "session not established"
        if item.family not in self._underlay_families():
            return "not the underlay's family"
        return None

    def _underlay_families(self) -> set[str]:
        """``ipv4 unicast`` / ``ipv6 unicast``: our member's, else the underlay's."""
        rescue = self._config.rescue
        if rescue is None or rescue.membership is None:
            return set()
        versions = {network.version for network in rescue.membership.underlay_prefixes}
        if self._rescue_member is not None:
            versions &= {ipaddress.ip_address(self._rescue_member).version}
        return {f"ipv{version} unicast" for version in versions}

    def _advance_gate(self, now: Instant) -> bool:
        """Open the gate if the member set is known and applied; whether it opened."""
        if self._gate is None or self._gate.open:
            return False
        learnt = set(self._learnt()) - {self._rescue_member}
        if not self._gate.data_path(learnt, self._rescue_peers, now):
            return False
        self._gate_moved()
        return True

    def _gate_moved(self) -> None:
        if self._gate is not None:
            self._emit(fx.GateChanged(self._gate.name, self._gate.opened_by))

    def _routes_received(self, item: PeerRoutesReceived, now: Instant) -> bool:
        """Member routes in: a changed member set is applied to the data path as a diff."""
        self._routes_in.update(item.peer, item.announced, item.withdrawn)
        if self._members is None:
            return False
        if self._members.received(item.peer, item.announced, item.withdrawn, now.monotonic):
            self._sync_rescue()
        return False

    def _members_session_down(self, peer: str, now: Instant) -> bool:
        self._routes_in.drop(peer)
        return self._members is not None and self._members.session_down(peer, now.monotonic)

    def _learnt(self) -> tuple[str, ...]:
        return self._members.learnt() if self._members is not None else ()

    def _sync_rescue(self) -> None:
        self._emit(fx.SyncRescue(self._config, self._learnt()))

    def _address_changed(self, item: AddressChanged) -> bool:
        changed = False
        for prefix in self._config.prefixes:
            if (prefix.interface, prefix.prefix.network_address) != (
                item.interface,
                item.address,
            ):
                continue
            name = str(prefix.prefix)
            was = self._address_present.get(name)
            if was == item.present:
                continue
            self._address_present[name] = item.present
            reason = "address added" if item.present else "address removed"
            self._log.info("address_changed", prefix=name, present=item.present, reason=reason)
            if was and not item.present:
                self._emit(fx.Detected("address", withdrew=True))
            changed = True
        return changed

    # -- drains ------------------------------------------------------------------------

    def _drain_file_changed(self, item: DrainFileChanged, now: Instant) -> bool:
        if item.present == self._drain_file_present:
            return False
        self._drain_file_present = item.present
        self._log.info(
            "drain_file_changed", path=self._config.drain.drain_file, present=item.present
        )
        if item.present:
            self._start_drains(
                list(self._drains), "drain file present", DrainOrigin.DRAIN_FILE, now
            )
        else:
            # Only the drains the file started: an operator's drain outlives the file.
            self._end_drains(
                [
                    name
                    for name, drain in self._drains.items()
                    if drain.origin is DrainOrigin.DRAIN_FILE
                ]
            )
        return True

    def _hook_finished(self, item: DrainHookFinished, now: Instant) -> bool:
        drain = self._drains.get(item.prefix)
        if drain is None:
            return False
        self._log.info("drain_hook_finished", prefix=item.prefix, ok=item.ok, outcome=item.outcome)
        drain.hook_finished(now.monotonic)
        return True

    def _connections_counted(self, item: ConnectionsCounted, now: Instant) -> bool:
        drain = self._drains.get(item.prefix)
        if drain is None:
            return False
        if drain.connections != item.count:
            self._log.info("drain_connections", prefix=item.prefix, established=item.count)
        phase = drain.phase
        drain.connections_counted(now.monotonic, item.count)
        return drain.phase is not phase

    def _select(self, prefixes: Sequence[str] | None) -> tuple[list[str], list[str]]:
        if prefixes is None:
            return list(self._drains), []
        known = [prefix for prefix in prefixes if prefix in self._drains]
        unknown = [prefix for prefix in prefixes if prefix not in self._drains]
        return known, unknown

    def _drain(self, prefixes: Sequence[str] | None, reason: str, now: Instant) -> ControlResult:
        selected, unknown = self._select(prefixes)
        if unknown:
            return ControlResult(ok=False, message=f"not a configured prefix: {', '.join(unknown)}")
        started = self._start_drains(selected, reason, DrainOrigin.OPERATOR, now)
        return ControlResult(
            ok=True, message=f"draining {len(started)} prefix(es)", prefixes=tuple(started)
        )

    def _undrain(self, prefixes: Sequence[str] | None) -> ControlResult:
        selected, unknown = self._select(prefixes)
        if unknown:
            return ControlResult(ok=False, message=f"not a configured prefix: {', '.join(unknown)}")
        ended = self._end_drains(selected)
        return ControlResult(
            ok=True, message=f"undrained {len(ended)} prefix(es)", prefixes=tuple(ended)
        )

    def _start_drains(
        self, names: Sequence[str], reason: str, origin: DrainOrigin, now: Instant
    ) -> list[str]:
        started = [
            name
            for name in names
            if self._drains[name].start(now.monotonic, reason, origin, now.wall)
        ]
        for name in started:
            self._log.info("drain_started", prefix=name, reason=reason, origin=origin.value)
        self._persist_drains()
        return started

    def _end_drains(self, names: Sequence[str]) -> list[str]:
        ended = [name for name in names if self._drains[name].undrain()]
        for name in ended:
            self._log.info("drain_ended", prefix=name)
        self._persist_drains()
        return ended

    def _persist_drains(self) -> None:
        path = self._config.drain.state_file
        if path is None:
            return
        drains = tuple(
            PersistedDrain(name, drain.reason or "", drain.started_at or 0.0)
            for name, drain in self._drains.items()
            if drain.persistent
        )
        self._emit(fx.PersistDrains(path, drains))

    def _restore(self, restored: Sequence[PersistedDrain], now: Instant) -> None:
        """Re-apply drains persisted by a previous run (they end only by undrain)."""
        forgotten = False
        for entry in restored:
            drain = self._drains.get(entry.prefix)
            if drain is None:
                self._log.warning(
                    "drain_not_restored", prefix=entry.prefix, reason="not configured"
                )
                forgotten = True
                continue
            drain.restore_withdrawn(now.monotonic, entry.reason, entry.started_at)
            self._log.info("drain_restored", prefix=entry.prefix, reason=entry.reason)
        if forgotten:
            # As a reload that removes a prefix does: its drain ends, and the file says
            # so, or the prefix would come back drained when configured again.
            self._persist_drains()

    # -- configuration -----------------------------------------------------------------

    def _adopt(self, config: Config, now: Instant) -> None:
        """Make ``config`` current, keeping the state of what did not change."""
        self._config = config
        self._services = {
            service.name: _carry_over(self._services.get(service.name), service)
            for service in config.services
        }
        peers = sorted({str(peer.address) for peer in config.bgp.peers})
        self._peers = {peer: self._peers.get(peer, PeerRecord()) for peer in peers}
        names = [str(prefix.prefix) for prefix in config.prefixes]
        self._drains = {name: self._drains.get(name) or PrefixDrain(config.drain) for name in names}
        for drain in self._drains.values():
            drain.configure(config.drain)
        for name, prefix in zip(names, config.prefixes, strict=True):
            damp = self._dampening.get(name) or PrefixDampening(prefix.dampening)
            damp.configure(prefix.dampening)
            self._dampening[name] = damp
        self._dampening = {name: self._dampening[name] for name in names}
        self._decisions = {n: d for n, d in self._decisions.items() if n in self._drains}
        self._phases = {n: p for n, p in self._phases.items() if n in self._drains}
        self._address_present = {
            n: p for n, p in self._address_present.items() if n in self._drains
        }
        self._adopt_gate(config, now)
        if not LearntMembers.wanted(config):
            self._members = None
        elif self._members is None:
            # Membership turned on: learn from what the sessions already carry.
            self._members = LearntMembers(config, self._log)
            for peer, announced in self._routes_in.replay():
                self._members.received(peer, announced, (), now.monotonic)

    def _adopt_gate(self, config: Config, now: Instant) -> None:
        """The gate closes only at start: a reload that turns membership on finds a
        serving process, and one that turns it off leaves nothing to wait for."""
        if not LearntMembers.wanted(config):
            if self._gate is not None and self._gate.unconfigured(now):
                self._gate_moved()
        elif self._gate is None:
            self._gate = StartGate(False, _gate_timeout(config), now, self._log)
            self._gate_moved()
        else:
            self._gate.configure(_gate_timeout(config))

    def _reload(self, new: Config, now: Instant) -> ControlResult:
        self._last_reload_error = None
        self._emit(fx.ReloadFinished(ok=True, at=now.wall))
        if new == self._config:
            return ControlResult(ok=True, message="configuration unchanged")
        old = self._config
        self._adopt(new, now)
        self._config_loaded_at = now.wall
        self._report_config_change(old, new)
        self._settle_removed_and_added(old, now)
        for service, record in self._services.items():
            self._pace(service, record)
        self._emit(fx.ConfigApplied(new))
        notes = []
        if new.services != old.services:
            self._emit(fx.ScheduleProbes(tuple(new.services)))
        self._reconcile_rescue(old, new, now)
        if (_without_bfd(new.bgp), new.exabgp) != (_without_bfd(old.bgp), old.exabgp):
            # ExaBGP reads its neighbors at start only: a BGP change restarts it, which
            # resets every session. Prefix, service, bandwidth and BFD changes do not.
            self._emit(fx.RestartExabgp(new.bgp, new.exabgp))
            notes.append("bgp changed: ExaBGP restarted")
        if _bfd_peers(new) != _bfd_peers(old):
            self._forget_bfd(new)
            # New timers reach an UP session through a Poll Sequence (RFC 5880 §6.8.3).
            self._emit(fx.SyncBfd(_bfd_peers(new)))
            notes.append("bfd changed: applied without restarting ExaBGP")
        if new.http != old.http:
            notes.append("http changes take effect at the next restart")
        if new.logging != old.logging:
            self._emit(fx.ConfigureLogging(new.logging))
        self._log.info("config_reloaded", path=self._config_path, notes=notes)
        return ControlResult(ok=True, message="; ".join(["reloaded", *notes]))

    def _forget_bfd(self, new: Config) -> None:
        """A peer whose BFD was switched off no longer has a BFD verdict."""
        for peer in new.bgp.peers:
            record = self._peers[str(peer.address)]
            if peer.bfd is None and record.bfd_up is not None:
                was = record.effective_up
                record.bfd_up = None
                if record.effective_up != was:
                    self._emit(fx.PeerChanged(str(peer.address), record.effective_up, "bfd off"))

    def _settle_removed_and_added(self, old: Config, now: Instant) -> None:
        """Workers and persisted drains of removed prefixes go; added prefixes join a
        drain file that is present (the file drains everything, new prefixes too)."""
        for name in sorted(self._workers - set(self._drains)):
            self._workers.discard(name)
            self._emit(fx.StopDrainWorker(name))
        before = {str(prefix.prefix) for prefix in old.prefixes}
        if before - set(self._drains):
            self._persist_drains()
        if not self._drain_file_present:
            return
        for name in (name for name in self._drains if name not in before):
            # Never announced: nothing to shed, so it starts (and stays) withdrawn.
            reason = "drain file present"
            self._drains[name].start_withdrawn(
                now.monotonic, reason, DrainOrigin.DRAIN_FILE, now.wall
            )
            self._log.info("drain_started", prefix=name, reason=reason, origin="drain_file")

    def _reconcile_rescue(self, old: Config, new: Config, now: Instant) -> None:
        """A changed group or anycast address set is applied as a diff by the shell."""
        learnt_changed = False
        if self._members is not None and LearntMembers.wanted(old):
            learnt_changed = self._members.reconfigure(new, now.monotonic)
            # A wider guard (another community, more peers) may accept routes it refused.
            for peer, announced in self._routes_in.replay():
                received = self._members.received(peer, announced, (), now.monotonic)
                learnt_changed = received or learnt_changed
        if (new.rescue, new.prefixes) == (old.rescue, old.prefixes) and not learnt_changed:
            return
        if new.rescue is not None:
            self._emit(fx.SyncRescue(new, self._learnt()))
        elif old.rescue is not None:
            self._log.warning(
                "rescue_unconfigured", action="left installed; rescue remove removes it"
            )
            self._emit(fx.RescueUnconfigured())

    def _report_config_change(self, old: Config, new: Config) -> None:
        """Observations void after a reload, and the first one of each new session."""
        gone = fx.Unconfigured(
            services=_removed(old.services, new.services, lambda s: s.name),
            prefixes=_removed(old.prefixes, new.prefixes, lambda p: str(p.prefix)),
            peers=_removed(old.bgp.peers, new.bgp.peers, lambda p: str(p.address)),
        )
        if gone.services or gone.prefixes or gone.peers:
            self._emit(gone)
        old_peers = {str(peer.address) for peer in old.bgp.peers}
        for peer in self._peers:
            if peer not in old_peers:
                self._emit(fx.PeerChanged(peer, False, "peer added"))
        self._faulty_services &= set(self._services)
        if not self._faulty_services:
            self._fault = None

    def _reject_reload(self, message: str, now: Instant) -> ControlResult:
        self._last_reload_error = message
        self._log.error("reload_rejected", problems=message.splitlines())
        self._emit(fx.ReloadFinished(ok=False, at=now.wall))
        return ControlResult(
            ok=False, message="invalid configuration, nothing changed:\n" + message
        )

    # -- recomputing -------------------------------------------------------------------

    def _recompute(self, now: Instant) -> None:
        """Decide every prefix and hand out the resulting routes."""
        states = {name: record.machine.state for name, record in self._services.items()}
        why = {name: record.last_change_reason for name, record in self._services.items()}
        for prefix in self._config.prefixes:
            self._decide(prefix, states, why, now)
        sessions_up = {peer for peer, record in self._peers.items() if record.effective_up}
        routes = desired_routes(self._config, self._decisions, sessions_up)
        if self._members is not None:
            routes |= self._members.routes(sorted(sessions_up))
        if routes != self._routes or not self._routes_sent:
            self._routes = routes
            self._routes_sent = True
            self._emit(fx.SyncRoutes(dict(routes)))

    def _decide(
        self,
        prefix: PrefixConfig,
        states: dict[str, Health],
        why: dict[str, str | None],
        now: Instant,
    ) -> None:
        name = str(prefix.prefix)
        health = decide_prefix(prefix, states, self._address_present.get(name, False), why)
        damp = self._dampening[name]
        if self._health_announce.get(name) and not health.announce:
            damp.record_withdrawal(now.monotonic)
        self._health_announce[name] = health.announce
        drain = self._drains[name]
        drain.tick(now.monotonic)
        release = damp.release_at()
        suppressed = release is not None and damp.suppressed(now.monotonic)
        dampened_for = max(0.0, release - now.monotonic) if release and suppressed else None
        decision = apply_operations(health, drain.phase, drain.reason, dampened_for)
        if decision.announce and self._gate is not None and not self._gate.open:
            # Withdrawn, not a state of its own: to the fabric it is one, and a start-up
            # of a few seconds needs no series of its own per prefix.
            gate = self._gate.name.replace("_", " ")
            decision = PrefixDecision(name, False, f"start-up gate: {gate} (rescue membership)")
        self._record_decision(name, decision, drain.origin)
        self._track_drain(prefix, drain, now)

    def _record_decision(
        self, name: str, decision: PrefixDecision, origin: DrainOrigin | None = None
    ) -> None:
        previous = self._decisions.get(name)
        self._decisions[name] = decision
        if previous is not None and (previous.state, previous.graceful_shutdown) == (
            decision.state,
            decision.graceful_shutdown,
        ):
            return
        self._log.info(
            "prefix_state_changed",
            prefix=name,
            old=previous.state if previous else "unknown",
            new=decision.state,
            reason=decision.reason,
            graceful_shutdown=decision.graceful_shutdown,
        )
        if previous is None or previous.state != decision.state:
            reason = decision.reason
            if origin is not None and decision.state in {"draining", "drained"}:
                reason += _DRAINED_BY[origin]  # the history answers "drained by whom?"
            self._emit(fx.PrefixChanged(name, decision.state, decision.announce, reason))

    def _track_drain(self, prefix: PrefixConfig, drain: PrefixDrain, now: Instant) -> None:
        name = str(prefix.prefix)
        if self._phases.get(name) is not drain.phase:
            self._phases[name] = drain.phase
            self._emit(fx.DrainPhaseChanged(name, drain.phase.value, now.wall))
        wanted = drain.phase in _WORKER_PHASES
        if wanted and name not in self._workers:
            self._workers.add(name)
            self._emit(
                fx.StartDrainWorker(
                    prefix=name,
                    hook=self._config.drain.hook,
                    hook_timeout=self._config.drain.hook_timeout,
                    address=str(prefix.prefix.network_address),
                    ports=self._drain_ports(prefix),
                )
            )
        elif not wanted and name in self._workers:
            self._workers.discard(name)
            self._emit(fx.StopDrainWorker(name))

    def _drain_ports(self, prefix: PrefixConfig) -> tuple[int, ...]:
        """``ports:``, else the ports of the prefix's tcp and http(s) checks."""
        if prefix.ports is not None:
            return tuple(prefix.ports)
        ports = (check_port(self._config.service(name).check) for name in prefix.services)
        found = tuple(dict.fromkeys(port for port in ports if port is not None))
        if not found:
            # Nothing to count: the drain goes on at once, which may cut live sessions.
            self._log.warning(
                "drain_without_ports",
                prefix=str(prefix.prefix),
                reason="no ports: and no tcp or http(s) check",
            )
        return found

    # -- effects -----------------------------------------------------------------------

    def _emit(self, effect: fx.Effect) -> None:
        self._effects.append(effect)

    def _take(self) -> list[fx.Effect]:
        taken, self._effects = self._effects, []
        return taken


def _removed(old: Iterable[_T], new: Iterable[_T], name: Callable[[_T], str]) -> tuple[str, ...]:
    kept = {name(item) for item in new}
    return tuple(name(item) for item in old if name(item) not in kept)


def _carry_over(previous: ServiceRecord | None, service: ServiceConfig) -> ServiceRecord:
    """A service's record after a (re)load: a reload must not flap a healthy service."""
    machine = ServiceHealth(service.name, service.rise, service.fall)
    if previous is None:
        return ServiceRecord(machine)
    machine.state = previous.machine.state
    if (previous.machine.rise, previous.machine.fall) == (service.rise, service.fall):
        # Its streak too, when nothing about the hysteresis changed.
        machine.successes = previous.machine.successes
        machine.failures = previous.machine.failures
    # ``fast`` is what the scheduler was last told; the caller re-paces from it.
    return ServiceRecord(
        machine,
        previous.results,
        previous.last_change_at,
        previous.last_change_reason,
        previous.fast,
    )


def _without_bfd(bgp: BgpConfig) -> BgpConfig:
    """The part of ``bgp:`` ExaBGP reads: everything but the BFD settings."""
    peers = [peer.model_copy(update={"bfd": None}) for peer in bgp.peers]
    return bgp.model_copy(update={"peers": peers})


def _gate_timeout(config: Config) -> float:
    membership = config.rescue.membership if config.rescue is not None else None
    return float(membership.gate_timeout if membership is not None else GATE_TIMEOUT_DEFAULT)


def _bfd_peers(config: Config) -> tuple[PeerConfig, ...]:
    return tuple(peer for peer in config.bgp.peers if peer.bfd is not None)
