"""The rules and their tests speak of the metrics the sidecar really exports.

A rule that names a metric the sidecar does not export never fires, and promtool cannot
notice: its unit tests feed whatever series they are given. So every name an expression
reads must be exported by ``Metrics`` (with every setter called), be recorded by another
rule, or be one of the few series Prometheus itself makes. The same holds for the label
names the rules match and group on, for values of fixed-list labels (a misspelt
``state="drainig"`` would match nothing), and for the input series of the unit tests.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.prometheus.exposition import FIXED_VALUES, exercised_metrics, exposed_labels
from tests.unit.prometheus.rulefiles import (
    TEST_FILES,
    Rule,
    grouping_labels,
    load_yaml,
    matchers,
    metric_names,
    rules,
    series_selector,
)

PROMETHEUS_SIDE = {"up": set[str]()}
"""Series Prometheus makes for every target, with their own labels."""

TARGET_LABELS = {"job", "instance", "site", "fabric"}
"""Labels Prometheus attaches from the scrape configuration (see README, Monitoring)."""

SYNTHESISED_LABELS = {"family"}
"""Labels the rules make themselves (label_replace)."""

EXPOSED = exposed_labels(exercised_metrics())
RECORDED = {rule.name for rule in rules() if not rule.is_alert}
ALL_LABELS = set().union(*EXPOSED.values()) | TARGET_LABELS | SYNTHESISED_LABELS


def test_reader_finds_names_and_skips_keywords() -> None:
    """The PromQL reader itself: names yes; functions, keywords, labels, strings no."""
    expr = (
        'max without (state) (rate(a_total{state=~"x|y"}[5m])) * on (job) group_left () '
        'b:rec > 0.25 * label_replace(c, "family", "ipv4", "peer", "[^:]*") '
        "and ignoring (phase) sum by (site) (d) or time() - e"
    )
    assert metric_names(expr) == {"a_total", "b:rec", "c", "d", "e"}
    assert grouping_labels(expr) == {"state", "job", "phase", "site"}
    (matcher,) = matchers(expr)
    assert (matcher.metric, matcher.label, matcher.op, matcher.value) == (
        "a_total",
        "state",
        "=~",
        "x|y",
    )


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.name)
def test_rule_reads_only_exported_or_recorded_series(rule: Rule) -> None:
    unknown = {
        name
        for name in metric_names(rule.expr)
        if name not in EXPOSED and name not in RECORDED and name not in PROMETHEUS_SIDE
    }
    assert not unknown, f"{rule.name} reads series nothing exports: {sorted(unknown)}"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.name)
def test_rule_matches_labels_and_values_that_exist(rule: Rule) -> None:
    for matcher in matchers(rule.expr):
        _check_label(matcher.metric, matcher.label, rule.name)
        if (matcher.metric, matcher.label) in FIXED_VALUES and matcher.op in {"=", "=~"}:
            allowed = FIXED_VALUES[(matcher.metric, matcher.label)]
            values = matcher.value.split("|") if matcher.op == "=~" else [matcher.value]
            assert set(values) <= set(allowed), (
                f"{rule.name}: {matcher.metric}{{{matcher.label}{matcher.op}"
                f'"{matcher.value}"}} names values outside {allowed}'
            )
    unknown = grouping_labels(rule.expr) - ALL_LABELS
    assert not unknown, f"{rule.name} groups or matches on unknown labels {sorted(unknown)}"


def _check_label(metric: str, label: str, where: str) -> None:
    if metric in EXPOSED:
        known = EXPOSED[metric] | TARGET_LABELS
    elif metric in PROMETHEUS_SIDE:
        known = PROMETHEUS_SIDE[metric] | TARGET_LABELS
    else:
        known = ALL_LABELS  # a recorded series keeps what its rule kept
    assert label in known, f"{where}: {metric} has no label {label!r}"


def _input_series() -> list[tuple[str, str]]:
    found = []
    for path in TEST_FILES:
        for group in load_yaml(path)["tests"]:
            for series in group.get("input_series", []):
                found.append((path.name, str(series["series"])))
    return found


def test_unit_tests_have_input_series() -> None:
    assert len(_input_series()) >= 100


@pytest.mark.parametrize(("file", "series"), _input_series())
def test_unit_test_inputs_look_like_the_real_exposition(file: str, series: str) -> None:
    """Input series: exported names, their own labels, valid fixed-list values."""
    name, labels = series_selector(series)
    where = f"{file}: {series}"
    assert name in EXPOSED or name in PROMETHEUS_SIDE, f"{where}: not exported"
    for label, value in labels.items():
        _check_label(name, label, where)
        allowed = FIXED_VALUES.get((name, label))
        assert allowed is None or value in allowed, f"{where}: {label}={value!r}"
    if name.startswith("anycast_") or name.startswith("process_"):
        assert {"job", "instance"} <= set(labels), f"{where}: scraped series lack job/instance"


def test_bucket_bounds_in_tests_are_the_sidecars() -> None:
    """The lag histogram's input buckets are bounds the sidecar really has."""
    body, _ = exercised_metrics().render()
    real = set(
        re.findall(r'anycast_probe_schedule_lag_seconds_bucket\{le="([^"]+)"', body.decode())
    )
    used = {
        labels["le"]
        for _, series in _input_series()
        for name, labels in [series_selector(series)]
        if name == "anycast_probe_schedule_lag_seconds_bucket"
    }
    assert used, "no lag histogram in the unit tests"
    assert used <= real, sorted(used - real)
