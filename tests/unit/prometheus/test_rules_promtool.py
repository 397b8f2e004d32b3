"""The shipped Prometheus rules, checked and unit-tested by the real promtool.

``promtool check rules`` (with its linter, lint problems fatal) validates every rule file;
``promtool test rules`` runs the unit tests in configs/prometheus/tests/, which feed input
series to the rules and say which alerts fire when. On top, every alert must carry what
the on-call needs (severity, summary, description with a command to run) and must be
tested both firing and staying quiet.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.promtool import promtool
from tests.unit.prometheus.rulefiles import REPO, RULE_FILES, TEST_FILES, Rule, load_yaml, rules

SEVERITIES = {"critical", "warning", "info"}


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_there_are_rules_and_tests() -> None:
    assert RULE_FILES, "no rule file in configs/prometheus/"
    assert len(TEST_FILES) >= 3
    assert sum(rule.is_alert for rule in rules()) >= 15


@pytest.mark.parametrize("path", RULE_FILES, ids=_relative)
def test_promtool_check_rules(path: Path) -> None:
    result = promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=_relative)
def test_promtool_test_rules(path: Path) -> None:
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check can fail: a bad expression is reported with the rule's name."""
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: Broken\n    expr: sum by (site (up)\n",
        encoding="utf-8",
    )
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    assert "Broken" in result.stdout + result.stderr


def test_promtool_test_rules_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests can fail: expecting AnycastSidecarDown for a sidecar that is up."""
    test_file = tmp_path / "wrong.test.yml"
    test_file.write_text(
        f"""rule_files: ["{RULE_FILES[0]}"]
tests:
  - interval: 1m
    input_series:
      - series: 'up{{job="anycast-announcer",instance="srv1:9179"}}'
        values: '1x10'
    alert_rule_test:
      - eval_time: 10m
        alertname: AnycastSidecarDown
        exp_alerts:
          - exp_labels: {{severity: warning, job: anycast-announcer, instance: "srv1:9179"}}
""",
        encoding="utf-8",
    )
    result = promtool("test", "rules", str(test_file))
    assert result.returncode != 0
    assert "AnycastSidecarDown" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", [r for r in rules() if r.is_alert], ids=lambda r: r.name)
def test_alert_tells_the_on_call_what_to_do(rule: Rule) -> None:
    """A severity for routing, a one-line summary, a description with a command."""
    assert rule.body.get("labels", {}).get("severity") in SEVERITIES, rule.name
    annotations = rule.body.get("annotations", {})
    summary = str(annotations.get("summary", ""))
    description = str(annotations.get("description", ""))
    assert summary, f"{rule.name}: no summary"
    assert "\n" not in summary.strip(), f"{rule.name}: summary is more than one line"
    assert len(description) >= 100, f"{rule.name}: description too short to act on"
    # What to look at: a command or endpoint, written as code.
    assert re.search(r"`[^`]+`", description), f"{rule.name}: no command in description"


def _alert_cases() -> dict[str, list[bool]]:
    """Alert name -> for each test case of it, whether it expects alerts to fire."""
    cases: dict[str, list[bool]] = {}
    for path in TEST_FILES:
        for group in load_yaml(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    return cases


@pytest.mark.parametrize("name", sorted({r.name for r in rules() if r.is_alert}))
def test_every_alert_is_tested_firing_and_quiet(name: str) -> None:
    outcomes = _alert_cases().get(name, [])
    assert True in outcomes, f"{name}: no test case where it fires"
    assert False in outcomes, f"{name}: no test case where it stays quiet"


def test_tests_name_only_alerts_that_exist() -> None:
    """A misspelt alertname in a test would expect silence from a rule that is not there."""
    alerts = {r.name for r in rules() if r.is_alert}
    assert set(_alert_cases()) <= alerts


def test_readme_monitoring_section_explains_every_alert() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Monitoring\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no '## Monitoring' section"
    section = match.group(1)
    missing = sorted(r.name for r in rules() if r.is_alert and r.name not in section)
    assert not missing, f"not explained in README's Monitoring section: {missing}"
