"""The metrics the Prometheus rules read: their series, values and naming.

Each setter is checked through the rendered exposition, as Prometheus would read it.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anycast_announcer import __version__
from anycast_announcer.core import effects as fx
from anycast_announcer.metrics import (
    DETECTION_SOURCES,
    DRAIN_PHASES,
    PREFIX_STATES,
    RESOURCE_ERROR_KINDS,
    Metrics,
    RescueCounters,
    RescuePeerCounters,
    resource_error_kind,
)
from tests.promtool import promtool
from tests.unit.prometheus.exposition import exercised_metrics

P4 = "10.255.0.1/32"
P6 = "fd00:255::1/128"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _of(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The series of ``name`` whose labels include ``labels``."""
    return {
        key: value
        for (sample, key), value in samples.items()
        if sample == name and set(labels.items()) <= set(key)
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


class TestStates:
    def test_prefix_state_is_one_hot_over_all_five_states(self) -> None:
        metrics = Metrics()
        metrics.prefix_state(P4, "announced")
        metrics.prefix_state(P4, "draining")
        metrics.prefix_state(P6, "dampened")
        samples = _samples(metrics)
        v4 = {
            dict(k)["state"]: v for k, v in _of(samples, "anycast_prefix_state", prefix=P4).items()
        }
        assert v4 == {state: (1.0 if state == "draining" else 0.0) for state in PREFIX_STATES}
        assert _value(samples, "anycast_prefix_state", prefix=P6, state="dampened") == 1

    def test_unknown_state_is_refused_and_changes_nothing(self) -> None:
        metrics = Metrics()
        metrics.prefix_state(P4, "announced")

        def ours() -> dict[Any, float]:
            # process_* (CPU time, memory) moves between two scrapes by itself.
            return {k: v for k, v in _samples(metrics).items() if k[0].startswith("anycast_")}

        before = ours()
        with pytest.raises(ValueError, match="'up' is not one of announced"):
            metrics.prefix_state(P4, "up")
        with pytest.raises(ValueError, match="drain phase 'done'"):
            metrics.drain_phase(P4, "done", since=0.0)
        assert ours() == before

    def test_drain_phase_one_hot_with_its_start(self) -> None:
        metrics = Metrics()
        metrics.drain_phase(P4, "hook", since=1000.0)
        metrics.drain_phase(P4, "graceful_shutdown", since=1042.5)
        samples = _samples(metrics)
        phases = {
            dict(k)["phase"]: v for k, v in _of(samples, "anycast_drain_phase", prefix=P4).items()
        }
        assert phases == {p: (1.0 if p == "graceful_shutdown" else 0.0) for p in DRAIN_PHASES}
        assert _value(samples, "anycast_drain_phase_started_timestamp_seconds", prefix=P4) == 1042.5

    def test_exabgp_up_and_probe_interval(self) -> None:
        metrics = Metrics()
        assert _value(_samples(metrics), "anycast_exabgp_up") == 0
        metrics.exabgp_changed(up=True)
        metrics.probe_interval("web", 0.5)
        metrics.probe_interval("dns", 5.0)
        samples = _samples(metrics)
        assert _value(samples, "anycast_exabgp_up") == 1
        assert _value(samples, "anycast_probe_interval_seconds", service="web") == 0.5
        assert _value(samples, "anycast_probe_interval_seconds", service="dns") == 5.0


class TestReloads:
    def test_start_counts_as_a_successful_load(self) -> None:
        samples = _samples(Metrics())
        assert _value(samples, "anycast_config_last_reload_successful") == 1
        assert _value(samples, "anycast_config_last_reload_success_timestamp_seconds") > 0
        for result in ("success", "failure"):
            assert _value(samples, "anycast_config_reloads_total", result=result) == 0

    def test_failed_then_successful_reload(self) -> None:
        metrics = Metrics()
        metrics.reload_finished(ok=True, at=1000.0)
        metrics.reload_finished(ok=False, at=2000.0)
        samples = _samples(metrics)
        assert _value(samples, "anycast_config_last_reload_successful") == 0
        # The timestamp is of the last success, not of the last attempt.
        assert _value(samples, "anycast_config_last_reload_success_timestamp_seconds") == 1000
        metrics.reload_finished(ok=True, at=3000.0)
        samples = _samples(metrics)
        assert _value(samples, "anycast_config_last_reload_successful") == 1
        assert _value(samples, "anycast_config_last_reload_success_timestamp_seconds") == 3000
        assert _value(samples, "anycast_config_reloads_total", result="success") == 2
        assert _value(samples, "anycast_config_reloads_total", result="failure") == 1


class TestEventCounters:
    def test_fixed_list_counters_exist_at_zero(self) -> None:
        """So increase() sees the first event instead of a series appearing at 1."""
        samples = _samples(Metrics())
        for source in DETECTION_SOURCES:
            assert _value(samples, "anycast_detection_events_total", source=source) == 0
            assert _value(samples, "anycast_detection_events_ignored_total", source=source) == 0
        for kind in RESOURCE_ERROR_KINDS:
            assert _value(samples, "anycast_sidecar_resource_errors_total", kind=kind) == 0

    def test_detection_events_and_ignored_ones(self) -> None:
        metrics = Metrics()
        metrics.detection_event("listener", withdrew=True)
        metrics.detection_event("listener", withdrew=False)
        metrics.detection_event("probe", withdrew=False)
        samples = _samples(metrics)
        assert _value(samples, "anycast_detection_events_total", source="listener") == 2
        assert _value(samples, "anycast_detection_events_ignored_total", source="listener") == 1
        assert _value(samples, "anycast_detection_events_ignored_total", source="probe") == 1
        with pytest.raises(ValueError, match="detection source 'dbus'"):
            metrics.detection_event("dbus", withdrew=True)

    def test_resource_errors(self) -> None:
        metrics = Metrics()
        metrics.sidecar_resource_error(resource_error_kind(OSError(errno.EMFILE, "Too many")))
        metrics.sidecar_resource_error("emfile")
        samples = _samples(metrics)
        assert _value(samples, "anycast_sidecar_resource_errors_total", kind="emfile") == 2
        with pytest.raises(ValueError, match="resource error kind 'EMFILE'"):
            metrics.sidecar_resource_error("EMFILE")

    @pytest.mark.parametrize(
        ("error", "kind"),
        [
            (OSError(errno.EMFILE, "Too many open files"), "emfile"),
            (OSError(errno.ENFILE, "File table overflow"), "enfile"),
            (OSError(errno.ENOBUFS, "No buffer space"), "enobufs"),
            (OSError(errno.EAGAIN, "Resource temporarily unavailable"), "eagain"),
            (MemoryError(), "enomem"),
            (OSError(errno.ECONNREFUSED, "refused"), "other"),
            (OSError("no errno"), "other"),
            (ValueError("x"), "other"),
        ],
    )
    def test_resource_error_kind(self, error: BaseException, kind: str) -> None:
        assert resource_error_kind(error) == kind
        assert kind in RESOURCE_ERROR_KINDS


class TestRescue:
    def test_nothing_until_rescue_reports(self) -> None:
        samples = _samples(Metrics())
        assert not [name for name, _ in samples if name.startswith("anycast_rescue_")]

    def test_absolute_values_as_the_kernel_has_them(self) -> None:
        """Readings are set, not added; a smaller reading (kernel state rebuilt) is shown
        as it is, which Prometheus reads as a counter reset."""
        metrics = Metrics()
        peers = {"10.0.2.2": RescuePeerCounters(10, 20, 1500, 3000)}
        metrics.rescue_counters(RescueCounters(True, peers, icmp_relayed=3, orphans=7))
        metrics.rescue_counters(RescueCounters(True, peers, icmp_relayed=3, orphans=7))
        samples = _samples(metrics)
        packets = "anycast_rescue_packets_total"
        assert _value(samples, packets, peer="10.0.2.2", direction="sent") == 10
        assert _value(samples, packets, peer="10.0.2.2", direction="received") == 20
        assert (
            _value(samples, "anycast_rescue_bytes_total", peer="10.0.2.2", direction="sent") == 1500
        )
        assert _value(samples, "anycast_rescue_icmp_relayed_total") == 3
        assert _value(samples, "anycast_rescue_orphans_total") == 7
        assert _value(samples, "anycast_rescue_installed") == 1

        fewer = {"10.0.3.2": RescuePeerCounters(1, 0, 100, 0)}
        metrics.rescue_counters(RescueCounters(False, fewer, icmp_relayed=0, orphans=2))
        samples = _samples(metrics)
        assert _of(samples, packets, peer="10.0.2.2") == {}
        assert _value(samples, packets, peer="10.0.3.2", direction="sent") == 1
        assert _value(samples, "anycast_rescue_orphans_total") == 2
        assert _value(samples, "anycast_rescue_installed") == 0

        metrics.rescue_counters(None)
        assert not [n for n, _ in _samples(metrics) if n.startswith("anycast_rescue_")]


class TestRegistry:
    def test_process_metrics_in_each_sidecars_registry(self) -> None:
        first, second = Metrics(), Metrics()
        for metrics in (first, second):
            samples = _samples(metrics)
            assert _value(samples, "process_open_fds") > 0
            assert _value(samples, "process_max_fds") >= _value(samples, "process_open_fds")
            assert _value(samples, "process_cpu_seconds_total") >= 0
            assert _value(samples, "anycast_build_info", version=__version__) == 1
        first.prefix_state(P4, "announced")
        assert _of(_samples(second), "anycast_prefix_state") == {}

    def test_forgetting_a_prefix_service_and_peer(self) -> None:
        metrics = Metrics()
        for prefix in (P4, P6):
            metrics.prefix_changed(prefix, announced=True)
            metrics.prefix_state(prefix, "announced")
            metrics.drain_phase(prefix, "none", since=5.0)
        metrics.service_changed("web", up=True)
        metrics.probe_interval("web", 1.0)
        metrics.peer_changed("10.0.1.1", up=True)
        metrics.forget_prefix(P4)
        metrics.forget_prefix(P4)  # idempotent
        metrics.forget_service("web")
        metrics.forget_peer("10.0.1.1")
        metrics.forget_peer("never-seen")
        samples = _samples(metrics)
        assert not [key for (_, key) in samples if ("prefix", P4) in key]
        assert len(_of(samples, "anycast_prefix_state", prefix=P6)) == len(PREFIX_STATES)
        assert _of(samples, "anycast_drain_phase_started_timestamp_seconds", prefix=P6)
        assert _of(samples, "anycast_service_up") == {}
        assert _of(samples, "anycast_probe_interval_seconds") == {}
        assert _of(samples, "anycast_bgp_peer_up") == {}


class TestNaming:
    def test_promtool_check_metrics_is_clean(self) -> None:
        """Units in names, _total on counters only, HELP everywhere: promtool's lint."""
        body, _ = exercised_metrics().render()
        result = promtool("check", "metrics", stdin=body.decode())
        assert result.returncode == 0, result.stdout + result.stderr
        assert (result.stdout + result.stderr).strip() == ""

    def test_promtool_check_metrics_can_complain(self) -> None:
        """The lint is not a no-op: a counter without _total and a unit abbreviation."""
        bad = "# HELP lag_ms Lag.\n# TYPE lag_ms counter\nlag_ms 1\n"
        result = promtool("check", "metrics", stdin=bad)
        assert result.returncode != 0
        assert '"_total" suffix' in result.stdout + result.stderr


class TestRescueGate:
    def test_one_hot_and_timeouts_counted(self) -> None:
        """No series without a gate; then one-hot over the three states, and a gate
        opened by its timeout is counted."""
        metrics = Metrics()
        assert not _of(_samples(metrics), "anycast_rescue_gate_state")
        metrics.gate_changed("waiting_for_eor", timed_out=False)
        samples = _samples(metrics)
        assert _of(samples, "anycast_rescue_gate_state") == {
            (("state", "open"),): 0,
            (("state", "waiting_for_data_path"),): 0,
            (("state", "waiting_for_eor"),): 1,
        }
        assert _value(samples, "anycast_rescue_gate_timeouts_total") == 0
        metrics.record(fx.GateChanged("open", "timeout"))  # as the supervisor reports it
        samples = _samples(metrics)
        assert _value(samples, "anycast_rescue_gate_state", state="open") == 1
        assert _value(samples, "anycast_rescue_gate_state", state="waiting_for_eor") == 0
        assert _value(samples, "anycast_rescue_gate_timeouts_total") == 1

    def test_an_unknown_state_is_a_bug(self) -> None:
        with pytest.raises(ValueError, match="gate state 'closed'"):
            Metrics().gate_changed("closed", timed_out=False)
