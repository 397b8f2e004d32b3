"""A real sidecar's /metrics, scraped inside its lab node and linted by promtool.

The sidecar announces to the real FRR leaf of the single-leaf lab, so sessions, prefixes
and probes all have series. Then: ``promtool check metrics`` must find nothing to
complain about, every label value must come from the configuration or a fixed list, and
the set of series must not grow with probes or connections (each scrape is a new
connection, and many probes run between the two scrapes compared).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from anycast_announcer import __version__
from anycast_announcer.metrics import (
    DETECTION_SOURCES,
    DRAIN_PHASES,
    PREFIX_STATES,
    REASON_CATEGORIES,
    RESOURCE_ERROR_KINDS,
    Metrics,
)
from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    ANYCAST_V6,
    Running,
    Sidecar,
    announced_via,
    sidecar_config,
)
from tests.lablib import wait_until
from tests.promtool import promtool, promtool_path
from tests.unit.prometheus.rulefiles import RULE_FILES, rules

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
PEERS = ("10.0.1.1", "fd00:1::1")
SCRAPE = (
    "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
    "'http://127.0.0.1:9179/metrics', timeout=5).read().decode())"
)

# Label name -> the values it may take: configured names or a fixed list, nothing else.
ALLOWED_VALUES: dict[str, set[str]] = {
    "service": {"web"},
    "prefix": {ANYCAST_V4, ANYCAST_V6},
    "peer": set(PEERS),
    "name": {"web", ANYCAST_V4, ANYCAST_V6},  # anycast_state_transitions_total
    "kind": {"service", "prefix", *RESOURCE_ERROR_KINDS},
    "reason": set(REASON_CATEGORIES),
    "state": set(PREFIX_STATES),
    "phase": set(DRAIN_PHASES),
    "source": set(DETECTION_SOURCES),
    "result": {"success", "failure"},
    "direction": {"sent", "received"},
    "version": set(),  # checked against the package version below
    "le": set(),  # histogram bounds, fixed in code
}

Series = set[tuple[str, tuple[tuple[str, str], ...]]]

# The labels Prometheus would add from the scrape configuration (README, Monitoring).
TARGET = {"job": "anycast-announcer", "instance": "srv1:9179", "site": "lab", "fabric": "f1"}


def scrape(lab: Lab) -> str:
    """GET /metrics from inside srv1's namespace (a new connection each time)."""
    result = lab.run("srv1", [sys.executable, "-c", SCRAPE], check=True, timeout=20)
    return result.stdout


def scrape_when(lab: Lab, ready: Callable[[str], bool]) -> str:
    """A scrape if ``ready`` says it shows what we wait for, else "" (not yet)."""
    text = scrape(lab)
    return text if ready(text) else ""


def series(text: str) -> Series:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def probes_run(text: str) -> float:
    return value(text, "anycast_probe_duration_seconds_count", service="web")


def steady(text: str) -> bool:
    """Both sessions up and both prefixes announced: no series still to appear."""
    return all(value(text, "anycast_bgp_peer_up", peer=peer) == 1 for peer in PEERS) and all(
        value(text, "anycast_prefix_announced", prefix=prefix) == 1
        for prefix in (ANYCAST_V4, ANYCAST_V6)
    )


def healthy_sidecar(running: Running) -> str:
    """Start srv1's service and sidecar (API on) and return a scrape once it is steady."""
    promtool_path()  # fails under CI, before any work, when promtool is missing
    running.service("srv1")
    config = sidecar_config("srv1", 10_000)
    config["http"] = {"listen": "127.0.0.1:9179"}
    sidecar = Sidecar(running.lab, "srv1", config, running.workdir)
    running.sidecars.append(sidecar)
    sidecar.start()
    wait_until(
        lambda: announced_via(running.lab, SRV1),
        timeout=20,
        message=f"never announced:\n{sidecar.log_tail()}",
    )
    return wait_until(
        lambda: scrape_when(running.lab, steady),
        timeout=20,
        message=f"sessions or prefixes never all up in /metrics:\n{sidecar.log_tail()}",
    )


def test_live_scrape_is_lint_clean_and_bounded(running: Running) -> None:
    first = healthy_sidecar(running)
    # The service probes every 0.5 s: wait for ten more probes and several more scrapes.
    baseline = probes_run(first)
    later = wait_until(
        lambda: scrape_when(running.lab, lambda text: probes_run(text) >= baseline + 10),
        timeout=30,
        message="the probe count in /metrics did not grow",
    )

    lint = promtool("check", "metrics", stdin=later)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert (lint.stdout + lint.stderr).strip() == ""

    assert series(later) == series(first), "series appeared or vanished between scrapes"
    for name, labels in series(later):
        for label, label_value in labels:
            assert label in ALLOWED_VALUES, f"{name}: unexpected label {label}"
            if ALLOWED_VALUES[label]:
                assert label_value in ALLOWED_VALUES[label], f"{name}: {label}={label_value!r}"
    assert value(later, "anycast_build_info", version=__version__) == 1
    assert value(later, "process_open_fds") > 0

    # The running sidecar's registry is the one the rules are checked against: every
    # family a fresh Metrics declares is in the live exposition (flow rescue exports
    # nothing until it is configured, so it is not declared up front either).
    live = {family.name for family in text_string_to_metric_families(later)}
    body, _ = Metrics().render()
    declared = {family.name for family in text_string_to_metric_families(body.decode())}
    assert declared - live == set()


def as_rule_test(text: str) -> dict[str, Any]:
    """A promtool test file: the scrape as constant input series for 40 minutes (up 1,
    target labels added), every alert expected quiet, both prefixes fully served."""
    inputs = [{"series": _selector("up", TARGET), "values": "1x40"}]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.value == sample.value:  # NaN has no notation in promtool's input
                labels = {**sample.labels, **TARGET}
                inputs.append(
                    {"series": _selector(sample.name, labels), "values": _const(sample.value)}
                )
    served = [
        {
            "labels": _selector(
                "site_prefix:anycast_servers_serving:ratio", {"site": "lab", "prefix": p}
            ),
            "value": 1,
        }
        for p in (ANYCAST_V4, ANYCAST_V6)
    ]
    return {
        "rule_files": [str(path) for path in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "40m", "alertname": rule.name, "exp_alerts": []}
                    for rule in rules()
                    if rule.is_alert
                ],
                "promql_expr_test": [
                    {
                        "expr": "site_prefix:anycast_servers_serving:ratio",
                        "eval_time": "40m",
                        "exp_samples": served,
                    }
                ],
            }
        ],
    }


def _selector(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _const(number: float) -> str:
    return f"{number:.17g}x40"


def test_rules_stay_quiet_on_a_healthy_sidecar(running: Running, tmp_path: Path) -> None:
    """The shipped rules, fed what a healthy announcing sidecar really exports, fire
    nothing, and the fleet view counts the server as serving both prefixes."""
    text = healthy_sidecar(running)
    test_file = tmp_path / "live.test.yml"
    test_file.write_text(yaml.safe_dump(as_rule_test(text), sort_keys=False), encoding="utf-8")
    result = promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
