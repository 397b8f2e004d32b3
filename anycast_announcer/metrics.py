"""Prometheus metrics: what the supervisor reports, rendered for ``GET /metrics``.

Each ``Metrics`` owns its own ``CollectorRegistry``, so two sidecars (or two tests) in one
process never share series. Label values come from the configuration (service, prefix and
peer names) or from a fixed list (probe failure categories), never from free text, so the
number of series stays bounded however chatty a failing probe is.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from anycast_announcer.core import effects as fx
from anycast_announcer.core.effects import Effect

__all__ = ["REASON_CATEGORIES", "Metrics", "reason_category"]

REASON_CATEGORIES = (
    "timeout",
    "refused",
    "http_status",
    "body_mismatch",
    "tls",
    "exit_status",
    "signal",
    "cannot_run",
    "unreachable",
    "other",
)
"""The ``reason`` label values of ``anycast_probe_failures_total``."""

# First match wins. The anchored patterns follow the wording of anycast_announcer.checks
# and come first, so "exit status 1: connection refused" counts as exit_status: the
# command's own output is not ours to classify.
_CATEGORY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("exit_status", re.compile(r"^exit status\b", re.IGNORECASE)),
    ("signal", re.compile(r"^killed by signal\b", re.IGNORECASE)),
    ("cannot_run", re.compile(r"^cannot run\b", re.IGNORECASE)),
    ("http_status", re.compile(r"^http status\b", re.IGNORECASE)),
    ("body_mismatch", re.compile(r"^body did not match\b", re.IGNORECASE)),
    ("tls", re.compile(r"^tls\b|certificate|\bssl\b", re.IGNORECASE)),
    ("timeout", re.compile(r"\btime ?out\b|\btimed out\b", re.IGNORECASE)),
    ("refused", re.compile(r"\brefused\b", re.IGNORECASE)),
    (
        "unreachable",
        re.compile(
            r"unreachable|no route to host|cannot resolve|address not available|"
            r"connection reset|connection closed",
            re.IGNORECASE,
        ),
    ),
)

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


def reason_category(reason: str) -> str:
    """Map a probe's free-text failure reason to one of ``REASON_CATEGORIES``."""
    for category, pattern in _CATEGORY_PATTERNS:
        if pattern.search(reason):
            return category
    return "other"


class Metrics:
    """The sidecar's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._announced: dict[str, bool] = {}
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

    def record(self, effect: Effect) -> None:
        """Take an observation the decision core reported."""
        match effect:
            case fx.ProbeRecorded(service=service, result=result):
                self.probe_finished(service, result.ok, result.latency, result.reason)
            case fx.ServiceChanged(service=service, up=up):
                self.service_changed(service, up)
            case fx.PrefixChanged(prefix=prefix, announced=announced):
                if self._announced.get(prefix) != announced:
                    self._announced[prefix] = announced
                    self.prefix_changed(prefix, announced)
            case fx.PeerChanged(peer=peer, up=up):
                self.peer_changed(peer, up)
            case _:
                pass

    def probe_started(self, lag: float) -> None:
        """A probe started ``lag`` seconds after its scheduled time."""
        self._schedule_lag.observe(max(lag, 0.0))

    def probe_finished(self, service: str, ok: bool, latency: float, reason: str) -> None:
        """Record one probe; failures are counted by the category of their reason."""
        self._probe_duration.labels(service=service).observe(max(latency, 0.0))
        if not ok:
            self._probe_failures.labels(service=service, reason=reason_category(reason)).inc()

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

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
