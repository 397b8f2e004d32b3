"""Prometheus metrics: what the supervisor reports, rendered for ``GET /metrics``.

Each ``Metrics`` owns its own ``CollectorRegistry``, so two sidecars (or two tests) in one
process never share series. Label values come from the configuration (service, prefix and
peer names) or from a fixed list (probe failure categories), never from free text, so the
number of series stays bounded however chatty a failing probe is.

States and phases are exported one-hot (``anycast_prefix_state{prefix,state}``: 1 for the
current state, 0 for each other one), so a rule can select a state without knowing the
others and a missing series always means "not exported" rather than "not in this state".
Counters over a fixed list of label values are created at zero, so ``increase()`` sees
their first event. The flow-rescue counters mirror kernel counters that the sidecar reads
periodically; a client ``Counter`` can only be incremented, so they are exported by a
collector that renders the last snapshot it was given, absolute values as the kernel has
them (a counter that goes down, when the kernel state was rebuilt, is a counter reset to
Prometheus, which ``rate()`` handles).

The Prometheus rules that read these series are in ``configs/prometheus/``; a test checks
that every metric they name is declared here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from anycast_announcer import __version__
from anycast_announcer.checks import ProbeCategory, ProbeResult
from anycast_announcer.checks._result import RESOURCE_KINDS, resource_kind
from anycast_announcer.core import effects as fx
from anycast_announcer.core.effects import Effect
from anycast_announcer.status import BfdStatus

__all__ = [
    "BFD_STATES",
    "DETECTION_SOURCES",
    "DRAIN_PHASES",
    "DROP_REASONS",
    "GATE_STATES",
    "PREFIX_STATES",
    "REASON_CATEGORIES",
    "RESOURCE_ERROR_KINDS",
    "BfdReading",
    "Metrics",
    "RescueCounters",
    "RescuePeerCounters",
    "resource_error_kind",
]

REASON_CATEGORIES = tuple(
    category.value
    for category in ProbeCategory
    if category not in (ProbeCategory.OK, ProbeCategory.SIDECAR)
)
"""The ``reason`` label values of ``anycast_probe_failures_total``: each probe result
carries its category (``checks.ProbeCategory``), so nothing here reads free text. A
result of the sidecar's own fault is not a probe failure: it counts in
``anycast_sidecar_resource_errors_total``."""

PREFIX_STATES = ("announced", "withdrawn", "draining", "drained", "dampened")
"""The ``state`` label values of ``anycast_prefix_state`` (policy.PrefixDecision.state)."""

DRAIN_PHASES = ("none", "hook", "waiting_connections", "graceful_shutdown", "withdrawn")
"""The ``phase`` label values of ``anycast_drain_phase`` (drain.DrainPhase values)."""

GATE_STATES = ("waiting_for_eor", "waiting_for_data_path", "open")
"""The ``state`` label values of ``anycast_rescue_gate_state`` (core.gate)."""

BFD_STATES = ("admin_down", "down", "init", "up")
"""The ``state`` label values of ``anycast_bfd_session_state`` (RFC 5880 states)."""

DETECTION_SOURCES = ("listener", "process", "unit", "address", "probe")
"""The ``source`` label values of the detection event counters."""

RESOURCE_ERROR_KINDS = RESOURCE_KINDS
"""The ``kind`` label values of ``anycast_sidecar_resource_errors_total``."""

resource_error_kind = resource_kind

# Probe latencies: loopback TCP connects take microseconds, HTTP checks milliseconds and
# commands up to the probe timeout (at most an hour, in practice a few seconds).
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclass(frozen=True, slots=True)
class RescuePeerCounters:
    """Flow-rescue kernel counters for one peer of the anycast group."""

    packets_sent: int
    packets_received: int
    bytes_sent: int
    bytes_received: int


@dataclass(frozen=True, slots=True)
class RescueCounters:
    """One reading of the flow-rescue kernel state (absolute counter values)."""

    installed: bool
    peers: Mapping[str, RescuePeerCounters] = field(default_factory=dict)
    """Per configured peer (its underlay address or name from the config)."""
    icmp_relayed: int = 0
    orphans: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    """Packets the data path dropped on purpose, by reason (see ``DROP_REASONS``)."""


DROP_REASONS = ("budget", "source_budget", "set_full", "claim_refused", "icmp_budget")
"""Why the rescue data path dropped a packet: a blind copy over the per-server budget or
over its source prefix's, a new flow while a flow set was full, a forged or late
ownership claim, an ICMP error over its sender's or peer's budget."""


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {', '.join(allowed)}")


@dataclass(frozen=True, slots=True)
class BfdReading:
    """The BFD speaker's sessions and its transmit figures, read at scrape time."""

    sessions: Mapping[str, BfdStatus]
    worst_lateness: float
    """The latest a periodic transmit has been against its schedule, seconds."""
    suppressed: int
    """Transmits held back because the event loop had not beaten lately."""


class _BfdCollector(Collector):
    """Renders the BFD sessions from a reader the supervisor gives; nothing without one."""

    def __init__(self) -> None:
        self.source: Callable[[], BfdReading | None] | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(BfdReading({}, 0.0, 0))

    def collect(self) -> Iterable[Metric]:
        reading = self.source() if self.source is not None else None
        return () if reading is None else self._families(reading)

    @staticmethod
    def _families(reading: BfdReading) -> list[Metric]:
        state = GaugeMetricFamily(
            "anycast_bfd_session_state",
            "BFD session state toward a BGP peer, one-hot (RFC 5880 states).",
            labels=["peer", "state"],
        )
        changes = CounterMetricFamily(
            "anycast_bfd_session_state_changes",
            "BFD session state changes since the sidecar started.",
            labels=["peer"],
        )
        detection = GaugeMetricFamily(
            "anycast_bfd_detection_time_seconds",
            "How long the peer may stay silent before the session goes down (negotiated).",
            labels=["peer"],
        )
        interval = GaugeMetricFamily(
            "anycast_bfd_transmit_interval_seconds",
            "Negotiated interval between our BFD packets, before jitter.",
            labels=["peer"],
        )
        for peer, session in sorted(reading.sessions.items()):
            for name in BFD_STATES:
                state.add_metric([peer, name], 1.0 if session.state == name else 0.0)
            changes.add_metric([peer], float(session.state_changes))
            if session.detection_time is not None:
                detection.add_metric([peer], session.detection_time)
            if session.transmit_interval is not None:
                interval.add_metric([peer], session.transmit_interval)
        lateness = GaugeMetricFamily(
            "anycast_bfd_transmit_lateness_max_seconds",
            "The latest any periodic BFD transmit has been against its schedule.",
            value=reading.worst_lateness,
        )
        suppressed = CounterMetricFamily(
            "anycast_bfd_transmits_suppressed",
            "BFD transmits held back because the event loop had not beaten lately.",
            value=float(reading.suppressed),
        )
        return [state, changes, detection, interval, lateness, suppressed]


class _RescueCollector(Collector):
    """Renders the last ``RescueCounters`` handed over; nothing until the first one."""

    def __init__(self) -> None:
        self.counters: RescueCounters | None = None

    def describe(self) -> Iterable[Metric]:
        # Names only: the registry learns them without calling collect() at registration.
        return self._families(RescueCounters(installed=False))

    def collect(self) -> Iterable[Metric]:
        counters = self.counters
        return () if counters is None else self._families(counters)

    @staticmethod
    def _families(counters: RescueCounters) -> list[Metric]:
        packets = CounterMetricFamily(
            "anycast_rescue_packets",
            "Packets of other servers' flows handed to a peer (sent) or from a peer "
            "(received) over the rescue overlay.",
            labels=["peer", "direction"],
        )
        octets = CounterMetricFamily(
            "anycast_rescue_bytes",
            "Bytes of rescued packets, by peer and direction.",
            labels=["peer", "direction"],
        )
        for peer, values in sorted(counters.peers.items()):
            packets.add_metric([peer, "sent"], values.packets_sent)
            packets.add_metric([peer, "received"], values.packets_received)
            octets.add_metric([peer, "sent"], values.bytes_sent)
            octets.add_metric([peer, "received"], values.bytes_received)
        icmp = CounterMetricFamily(
            "anycast_rescue_icmp_relayed",
            "ICMP errors about our anycast flows relayed to the group (PMTUD).",
            value=counters.icmp_relayed,
        )
        orphans = CounterMetricFamily(
            "anycast_rescue_orphans",
            "Rescued flows that no server of the group holds any more.",
            value=counters.orphans,
        )
        dropped = CounterMetricFamily(
            "anycast_rescue_dropped_packets",
            "Packets the flow-rescue data path dropped on purpose: blind copies over the "
            "copy budget (budget, source_budget), new flows while a flow set was full "
            "(set_full), ownership claims for flows never handed to that peer "
            "(claim_refused), ICMP errors over a sender's or peer's budget (icmp_budget).",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            dropped.add_metric([reason], counters.dropped.get(reason, 0))
        installed = GaugeMetricFamily(
            "anycast_rescue_installed",
            "1 while the flow-rescue kernel state is installed, else 0.",
            value=1 if counters.installed else 0,
        )
        return [packets, octets, icmp, orphans, dropped, installed]


class Metrics:
    """The sidecar's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._announced: dict[str, bool] = {}
        self._gate: tuple[Gauge, Counter] | None = None
        # One series for the whole sidecar: lag is a property of the event loop, not of a
        # service, and per-service buckets would multiply the series by the service count.
        self._schedule_lag = Histogram(
            "anycast_probe_schedule_lag_seconds",
            "How late probes started against their schedule (event-loop load).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._probe_duration = Histogram(
            "anycast_probe_duration_seconds",
            "How long health probes took, successful or not.",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._probe_failures = Counter(
            "anycast_probe_failures_total",
            "Failed health probes, by service and failure category.",
            ["service", "reason"],
            registry=self.registry,
        )
        self._service_up = Gauge(
            "anycast_service_up",
            "1 while the service counts as healthy (after rise/fall), else 0.",
            ["service"],
            registry=self.registry,
        )
        self._prefix_announced = Gauge(
            "anycast_prefix_announced",
            "1 while the prefix is announced, else 0.",
            ["prefix"],
            registry=self.registry,
        )
        self._transitions = Counter(
            "anycast_state_transitions_total",
            "State changes of services (up/down) and prefixes (announced/withdrawn).",
            ["kind", "name"],
            registry=self.registry,
        )
        self._peer_up = Gauge(
            "anycast_bgp_peer_up",
            "1 while the BGP session to the peer is established, else 0.",
            ["peer"],
            registry=self.registry,
        )
        self._exabgp_restarts = Counter(
            "anycast_exabgp_restarts_total",
            "Times the ExaBGP child process was restarted.",
            registry=self.registry,
        )
        self._add_state_metrics()
        self._add_process_metrics()
        self._add_config_metrics()
        self._add_event_metrics()
        self._rescue = _RescueCollector()
        self.registry.register(self._rescue)
        self._bfd = _BfdCollector()
        self.registry.register(self._bfd)

    def _add_state_metrics(self) -> None:
        self._prefix_state = Gauge(
            "anycast_prefix_state",
            "1 for the prefix's current state, 0 for the others "
            "(announced, withdrawn, draining, drained, dampened).",
            ["prefix", "state"],
            registry=self.registry,
        )
        self._drain_phase = Gauge(
            "anycast_drain_phase",
            "1 for the prefix's current drain phase, 0 for the others.",
            ["prefix", "phase"],
            registry=self.registry,
        )
        self._drain_phase_started = Gauge(
            "anycast_drain_phase_started_timestamp_seconds",
            "Unix time the prefix's current drain phase began.",
            ["prefix"],
            registry=self.registry,
        )
        self._probe_interval = Gauge(
            "anycast_probe_interval_seconds",
            "The configured probe interval of the service.",
            ["service"],
            registry=self.registry,
        )
        self._exabgp_up = Gauge(
            "anycast_exabgp_up",
            "1 while ExaBGP runs and its API is connected, else 0.",
            registry=self.registry,
        )

    def _add_process_metrics(self) -> None:
        # The sidecar's own process: open fds against the limit, CPU, memory.
        ProcessCollector(registry=self.registry)
        Info("anycast_build", "The sidecar's version.", registry=self.registry).info(
            {"version": __version__}
        )

    def _add_config_metrics(self) -> None:
        # A Metrics is made once the configuration was loaded: the sidecar does not start
        # without a valid one, so the first load counts as a successful one.
        self._reload_ok = Gauge(
            "anycast_config_last_reload_successful",
            "1 if the last configuration load or reload was applied, 0 if it was rejected.",
            registry=self.registry,
        )
        self._reload_ok.set(1)
        self._reload_success_time = Gauge(
            "anycast_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration load or reload that was applied.",
            registry=self.registry,
        )
        self._reload_success_time.set(time.time())
        self._reloads = Counter(
            "anycast_config_reloads",
            "Configuration reloads, by result (success or failure).",
            ["result"],
            registry=self.registry,
        )
        for result in ("success", "failure"):
            self._reloads.labels(result=result)

    def _add_event_metrics(self) -> None:
        self._resource_errors = Counter(
            "anycast_sidecar_resource_errors",
            "Failures of the sidecar's own resources (fds, memory, buffers), which are "
            "not counted as service failures.",
            ["kind"],
            registry=self.registry,
        )
        for kind in RESOURCE_ERROR_KINDS:
            self._resource_errors.labels(kind=kind)
        self._detections = Counter(
            "anycast_detection_events",
            "Failure-detection events, by source.",
            ["source"],
            registry=self.registry,
        )
        self._detections_ignored = Counter(
            "anycast_detection_events_ignored",
            "Failure-detection events that did not lead to a withdrawal, by source.",
            ["source"],
            registry=self.registry,
        )
        for source in DETECTION_SOURCES:
            self._detections.labels(source=source)
            self._detections_ignored.labels(source=source)

    def record(self, effect: Effect) -> None:  # noqa: C901  # one case per observation type
        """Take an observation the decision core reported."""
        match effect:
            case fx.ProbeRecorded(service=service, result=result):
                self.probe_finished(service, result)
            case fx.ServiceChanged(service=service, up=up):
                self.service_changed(service, up)
            case fx.PrefixChanged(prefix=prefix, state=state, announced=announced):
                self.prefix_state(prefix, state)
                if self._announced.get(prefix) != announced:
                    self._announced[prefix] = announced
                    self.prefix_changed(prefix, announced)
            case fx.PeerChanged(peer=peer, up=up):
                self.peer_changed(peer, up)
            case fx.DrainPhaseChanged(prefix=prefix, phase=phase, since=since):
                self.drain_phase(prefix, phase, since)
            case fx.ReloadFinished(ok=ok, at=at):
                self.reload_finished(ok, at)
            case fx.SidecarFaulted(kind=kind):
                self.sidecar_resource_error(kind)
            case fx.Detected(source=source, withdrew=withdrew):
                self.detection_event(source, withdrew)
            case fx.ScheduleProbes(services=specs):
                for spec in specs:
                    self.probe_interval(spec.name, spec.interval)
            case fx.Unconfigured(services=names, prefixes=prefixes, peers=peers):
                self._forget(names, prefixes, peers)
            case fx.GateChanged(state=state, opened_by=opened_by):
                self.gate_changed(state, timed_out=opened_by == "timeout")
            case _:
                pass

    def _forget(
        self, services: Iterable[str], prefixes: Iterable[str], peers: Iterable[str]
    ) -> None:
        for service in services:
            self.forget_service(service)
        for prefix in prefixes:
            self._announced.pop(prefix, None)
            self.forget_prefix(prefix)
        for peer in peers:
            self.forget_peer(peer)

    def gate_changed(self, state: str, *, timed_out: bool) -> None:
        """The rescue start-up gate moved to ``state``.

        Registered at the first report, which only a core with rescue.membership makes:
        like the other rescue series, none exist before rescue reports."""
        _check(state, GATE_STATES, "gate state")
        if self._gate is None:
            self._gate = (
                Gauge(
                    "anycast_rescue_gate_state",
                    "1 for the start-up gate's current state, 0 for the others "
                    "(waiting_for_eor, waiting_for_data_path, open); anycast prefixes are "
                    "announced only while it is open.",
                    ["state"],
                    registry=self.registry,
                ),
                Counter(
                    "anycast_rescue_gate_timeouts",
                    "Start-up gates opened by rescue.membership.gate_timeout rather than by "
                    "an End-of-RIB and an applied data path (announced without knowing the "
                    "group).",
                    registry=self.registry,
                ),
            )
        gauge, timeouts = self._gate
        for name in GATE_STATES:
            gauge.labels(state=name).set(1 if name == state else 0)
        if timed_out:
            timeouts.inc()

    def probe_started(self, lag: float) -> None:
        """A probe started ``lag`` seconds after its scheduled time."""
        self._schedule_lag.observe(max(lag, 0.0))

    def probe_finished(self, service: str, result: ProbeResult) -> None:
        """Record one probe; failures are counted by their category.

        A probe the sidecar could not run (``SIDECAR``) is neither: it counts among the
        sidecar's resource errors, when the core reports the fault.
        """
        self._probe_duration.labels(service=service).observe(max(result.latency, 0.0))
        if result.category not in (ProbeCategory.OK, ProbeCategory.SIDECAR):
            self._probe_failures.labels(service=service, reason=result.category.value).inc()

    def service_changed(self, service: str, up: bool) -> None:
        """A service went up or down."""
        self._service_up.labels(service=service).set(1 if up else 0)
        self._transitions.labels(kind="service", name=service).inc()

    def prefix_changed(self, prefix: str, announced: bool) -> None:
        """A prefix was announced or withdrawn."""
        self._prefix_announced.labels(prefix=prefix).set(1 if announced else 0)
        self._transitions.labels(kind="prefix", name=prefix).inc()

    def peer_changed(self, peer: str, up: bool) -> None:
        """A BGP session went up or down."""
        self._peer_up.labels(peer=peer).set(1 if up else 0)

    def exabgp_restarted(self) -> None:
        """The ExaBGP child was started again after it exited."""
        self._exabgp_restarts.inc()

    def prefix_state(self, prefix: str, state: str) -> None:
        """The prefix is now in ``state`` (one of ``PREFIX_STATES``)."""
        _check(state, PREFIX_STATES, "prefix state")
        for each in PREFIX_STATES:
            self._prefix_state.labels(prefix=prefix, state=each).set(1 if each == state else 0)

    def drain_phase(self, prefix: str, phase: str, since: float) -> None:
        """The prefix's drain is in ``phase`` (``DRAIN_PHASES``) since Unix time ``since``."""
        _check(phase, DRAIN_PHASES, "drain phase")
        for each in DRAIN_PHASES:
            self._drain_phase.labels(prefix=prefix, phase=each).set(1 if each == phase else 0)
        self._drain_phase_started.labels(prefix=prefix).set(since)

    def reload_finished(self, ok: bool, at: float) -> None:
        """A reload was applied (``ok``) or rejected, at Unix time ``at``."""
        self._reloads.labels(result="success" if ok else "failure").inc()
        self._reload_ok.set(1 if ok else 0)
        if ok:
            self._reload_success_time.set(at)

    def exabgp_changed(self, up: bool) -> None:
        """ExaBGP runs with its API connected (``up``), or not."""
        self._exabgp_up.set(1 if up else 0)

    def sidecar_resource_error(self, kind: str) -> None:
        """The sidecar itself ran out of a resource (``RESOURCE_ERROR_KINDS``)."""
        _check(kind, RESOURCE_ERROR_KINDS, "resource error kind")
        self._resource_errors.labels(kind=kind).inc()

    def probe_interval(self, service: str, seconds: float) -> None:
        """The service's configured probe interval (set at start and on reload)."""
        self._probe_interval.labels(service=service).set(seconds)

    def detection_event(self, source: str, withdrew: bool) -> None:
        """A detection source (``DETECTION_SOURCES``) reported an event; ``withdrew`` says
        whether it led to a withdrawal (otherwise it also counts as ignored)."""
        _check(source, DETECTION_SOURCES, "detection source")
        self._detections.labels(source=source).inc()
        if not withdrew:
            self._detections_ignored.labels(source=source).inc()

    def bfd_source(self, source: Callable[[], BfdReading | None]) -> None:
        """Where scrapes read the BFD sessions (None from it: BFD not running, no series)."""
        self._bfd.source = source

    def rescue_counters(self, counters: RescueCounters | None) -> None:
        """The latest flow-rescue reading; None when rescue is not configured (no series)."""
        self._rescue.counters = counters

    def forget_prefix(self, prefix: str) -> None:
        """The prefix left the configuration: drop its series so no stale value remains."""
        _remove(self._prefix_announced, (prefix,))
        _remove(self._drain_phase_started, (prefix,))
        for state in PREFIX_STATES:
            _remove(self._prefix_state, (prefix, state))
        for phase in DRAIN_PHASES:
            _remove(self._drain_phase, (prefix, phase))

    def forget_service(self, service: str) -> None:
        """The service left the configuration: drop its gauges (counters stay, as counters
        do)."""
        _remove(self._service_up, (service,))
        _remove(self._probe_interval, (service,))

    def forget_peer(self, peer: str) -> None:
        """The peer left the configuration: drop its session gauge."""
        _remove(self._peer_up, (peer,))

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _remove(metric: Gauge, labels: tuple[str, ...]) -> None:
    # Older prometheus_client versions raise KeyError for a label set that was never set;
    # forgetting is idempotent either way.
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
