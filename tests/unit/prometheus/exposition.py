"""A ``Metrics`` with every setter called once, and what its exposition holds.

Labelled metrics have no series until a label set is used, so "declared by Metrics()" is
read from an instance on which every setter has been called: a metric that no setter
produces would be missing here too, which is the point.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from anycast_announcer.checks import ProbeCategory, ProbeResult
from anycast_announcer.metrics import (
    BFD_STATES,
    DETECTION_SOURCES,
    DRAIN_PHASES,
    GATE_STATES,
    PREFIX_STATES,
    REASON_CATEGORIES,
    RESOURCE_ERROR_KINDS,
    BfdReading,
    Metrics,
    RescueCounters,
    RescuePeerCounters,
)
from anycast_announcer.status import BfdStatus

PREFIX = "10.255.0.1/32"
BFD_UP = BfdStatus(
    state="up",
    remote_state="up",
    local_discriminator=7,
    remote_discriminator=9,
    local_diag="none",
    remote_diag="none",
    transmit_interval=0.3,
    detection_time=0.9,
    remote_min_rx=0.3,
    remote_min_tx=0.3,
    remote_multiplier=3,
    polling=False,
    state_changes=2,
    last_change_at=1_700_000_000.0,
    packets_sent=10,
    packets_received=10,
    packets_discarded=0,
)

FIXED_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("anycast_prefix_state", "state"): PREFIX_STATES,
    ("anycast_drain_phase", "phase"): DRAIN_PHASES,
    ("anycast_sidecar_resource_errors_total", "kind"): RESOURCE_ERROR_KINDS,
    ("anycast_detection_events_total", "source"): DETECTION_SOURCES,
    ("anycast_detection_events_ignored_total", "source"): DETECTION_SOURCES,
    ("anycast_state_transitions_total", "kind"): ("service", "prefix"),
    ("anycast_config_reloads_total", "result"): ("success", "failure"),
    ("anycast_rescue_packets_total", "direction"): ("sent", "received"),
    ("anycast_bfd_session_state", "state"): BFD_STATES,
    ("anycast_rescue_bytes_total", "direction"): ("sent", "received"),
    ("anycast_probe_failures_total", "reason"): REASON_CATEGORIES,
    ("anycast_rescue_gate_state", "state"): GATE_STATES,
}
"""Labels whose values come from a fixed list, per sample name."""


def exercised_metrics() -> Metrics:
    """A Metrics on which every reporting method has been called once."""
    metrics = Metrics()
    metrics.probe_started(0.01)
    metrics.probe_finished(
        "web", ProbeResult(False, 0.1, "timeout after 0.1s", ProbeCategory.TIMEOUT)
    )
    metrics.service_changed("web", up=True)
    metrics.prefix_changed(PREFIX, announced=True)
    metrics.peer_changed("10.0.1.1", up=True)
    metrics.exabgp_restarted()
    metrics.prefix_state(PREFIX, "announced")
    metrics.drain_phase(PREFIX, "none", since=1_700_000_000.0)
    metrics.reload_finished(ok=True, at=1_700_000_000.0)
    metrics.exabgp_changed(up=True)
    metrics.gate_changed("open", timed_out=True)
    metrics.sidecar_resource_error("emfile")
    metrics.probe_interval("web", 0.5)
    metrics.detection_event("listener", withdrew=False)
    metrics.rescue_counters(
        RescueCounters(
            installed=True,
            peers={"10.0.2.2": RescuePeerCounters(1, 2, 3, 4)},
            icmp_relayed=5,
            orphans=6,
        )
    )
    metrics.bfd_source(lambda: BfdReading({"10.0.1.1": BFD_UP}, 0.002, 0))
    return metrics


def exposed_labels(metrics: Metrics) -> dict[str, set[str]]:
    """Sample name -> the label names its series carry, from the rendered exposition."""
    body, _ = metrics.render()
    labels: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels[sample.name].update(sample.labels)
    return dict(labels)
