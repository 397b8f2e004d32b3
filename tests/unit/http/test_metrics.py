"""The metrics the supervisor reports, as Prometheus sees them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from anycast_announcer.checks import ProbeCategory, ProbeResult
from anycast_announcer.metrics import REASON_CATEGORIES, Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


class TestMetrics:
    def test_probe_latency_and_failures_by_category(self) -> None:
        """Latency is a histogram per service; failures count by bounded category."""
        metrics = Metrics()
        timeout = ProbeResult(False, 0.5, "timeout after 0.5s", ProbeCategory.TIMEOUT)
        metrics.probe_finished("web", ProbeResult(True, 0.002, "connected"))
        metrics.probe_finished("web", timeout)
        metrics.probe_finished("web", timeout)
        metrics.probe_finished(
            "dns", ProbeResult(False, 0.01, "exit status 3: boom", ProbeCategory.EXIT_STATUS)
        )
        # The sidecar's own shortage is no probe failure (it counts as a resource error).
        metrics.probe_finished(
            "dns", ProbeResult(False, 0.01, "sidecar cannot probe", ProbeCategory.SIDECAR)
        )
        samples = _samples(metrics)
        assert samples[("anycast_probe_duration_seconds_count", (("service", "web"),))] == 3
        assert (
            samples[
                ("anycast_probe_duration_seconds_bucket", (("le", "0.0025"), ("service", "web")))
            ]
            == 1
        )
        assert (
            samples[("anycast_probe_failures_total", (("reason", "timeout"), ("service", "web")))]
            == 2
        )
        assert (
            samples[
                ("anycast_probe_failures_total", (("reason", "exit_status"), ("service", "dns")))
            ]
            == 1
        )
        assert not any(
            name == "anycast_probe_failures_total" and dict(labels)["reason"] == "other"
            for name, labels in samples
        )

    def test_schedule_lag_histogram(self) -> None:
        """How late probes start: one sidecar-wide histogram (event-loop load)."""
        metrics = Metrics()
        metrics.probe_started(0.0004)
        metrics.probe_started(0.2)
        metrics.probe_started(-0.001)  # early by clock rounding: counted as on time
        samples = _samples(metrics)
        assert samples[("anycast_probe_schedule_lag_seconds_count", ())] == 3
        assert samples[("anycast_probe_schedule_lag_seconds_bucket", (("le", "0.001"),))] == 2
        assert samples[("anycast_probe_schedule_lag_seconds_bucket", (("le", "0.1"),))] == 2

    def test_state_gauges_and_transitions(self) -> None:
        """Service, prefix and peer gauges follow the last change; transitions add up."""
        metrics = Metrics()
        metrics.service_changed("web", up=True)
        metrics.service_changed("web", up=False)
        metrics.prefix_changed("10.255.0.1/32", announced=True)
        metrics.peer_changed("10.0.1.1", up=True)
        metrics.exabgp_restarted()
        metrics.exabgp_restarted()
        samples = _samples(metrics)
        assert samples[("anycast_service_up", (("service", "web"),))] == 0
        assert samples[("anycast_prefix_announced", (("prefix", "10.255.0.1/32"),))] == 1
        assert samples[("anycast_bgp_peer_up", (("peer", "10.0.1.1"),))] == 1
        assert (
            samples[("anycast_state_transitions_total", (("kind", "service"), ("name", "web")))]
            == 2
        )
        assert (
            samples[
                ("anycast_state_transitions_total", (("kind", "prefix"), ("name", "10.255.0.1/32")))
            ]
            == 1
        )
        assert samples[("anycast_exabgp_restarts_total", ())] == 2

    def test_each_instance_has_its_own_registry(self) -> None:
        """Two Metrics never share series (no global default registry)."""
        first, second = Metrics(), Metrics()
        first.exabgp_restarted()
        assert _samples(second)[("anycast_exabgp_restarts_total", ())] == 0

    def test_render_gives_the_prometheus_content_type(self) -> None:
        """render() returns the body and the exposition content type."""
        body, content_type = Metrics().render()
        assert content_type.startswith("text/plain")
        assert b"# TYPE anycast_service_up gauge" in body

    def test_names_follow_conventions(self) -> None:
        """anycast_ prefix (process_ for the standard process collector); counters end in
        _total, the histogram in _seconds."""
        metrics = Metrics()
        metrics.probe_finished("web", ProbeResult(False, 0.1, "x", ProbeCategory.TIMEOUT))
        body, _ = metrics.render()
        families = list(text_string_to_metric_families(body.decode()))
        assert families
        for family in families:
            assert family.name.startswith(("anycast_", "process_")), family.name
            if family.type == "histogram":
                assert family.name.endswith("_seconds")


def test_failure_labels_are_the_probe_categories() -> None:
    """The label values are the categories probes report, no free text involved."""
    assert set(REASON_CATEGORIES) == {c.value for c in ProbeCategory} - {"ok", "sidecar"}
