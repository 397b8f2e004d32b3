"""The shipped Prometheus rule and rule-test files, loaded, and a small PromQL reader.

The reader does not parse PromQL; it finds what the consistency tests need to compare
with the sidecar's exposition: metric names in an expression, the label matchers of each
selector and the label names of grouping clauses. It knows the syntax the shipped rules
use (selectors, functions, aggregations with by/without, vector matching, ranges).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
RULES_DIR = REPO / "configs" / "prometheus"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.test.yml"))

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{((?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# Whole words only ((?![\w:]) stops backtracking into "su" of "sum("), not calls.
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        # aggregations, which may stand before by/without instead of their "("
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "count",
        "stddev",
        "stdvar",
        "count_values",
        "topk",
        "bottomk",
        "quantile",
    }
)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher of a selector, e.g. ``state=~"draining|drained"``."""

    metric: str
    label: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A recording or alerting rule and the file it is in."""

    path: Path
    group: str
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("alert") or self.body.get("record"))

    @property
    def is_alert(self) -> bool:
        return "alert" in self.body

    @property
    def expr(self) -> str:
        return str(self.body["expr"])


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def rules() -> list[Rule]:
    """Every rule of every shipped rule file, in file order."""
    found: list[Rule] = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            found.extend(Rule(path, group["name"], body) for body in group["rules"])
    return found


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names an expression reads."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


def matchers(expr: str) -> list[Matcher]:
    """The label matchers of every named selector (``name{...}``) in an expression."""
    found = []
    for selector in _SELECTOR.finditer(expr):
        metric = selector.group(1)
        if metric is None:
            continue
        for label, op, value in _MATCHER.findall(selector.group(2)):
            found.append(Matcher(metric, label, op, value))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_left/group_right clauses."""
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    for clause in _GROUPING.finditer(text):
        labels.update(name.strip() for name in clause.group(1).split(",") if name.strip())
    return labels


def series_selector(series: str) -> tuple[str, dict[str, str]]:
    """Name and labels of an input series written as ``name{label="value",...}``."""
    match = re.fullmatch(r"\s*([A-Za-z_:][\w:]*)\s*(?:\{(.*)\})?\s*", series)
    assert match is not None, f"cannot read series {series!r}"
    labels = {label: value for label, _, value in _MATCHER.findall(match.group(2) or "")}
    return match.group(1), labels
