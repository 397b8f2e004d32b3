"""Numbers in docs/ come from the benchmark results, and the docs speak to operators.

docs/benchmarks.md is rendered from docs/benchmarks/*.json (``make bench`` writes both);
here it is rendered again from the stored JSON and must be identical, so a note can no
longer contradict the tables. The figures other pages quote from it are checked against
the same JSON.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.report import render
from tests.benchmarks.rescue_report import with_rescue_costs
from tests.benchmarks.run import notes, stored_results

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return stored_results(DOCS)


def test_benchmarks_page_is_rendered_from_the_stored_results(results: dict[str, Any]) -> None:
    expected = render(results, notes(results))
    assert (DOCS / "benchmarks.md").read_text(encoding="utf-8") == expected, (
        "docs/benchmarks.md differs from its results: run "
        "`python -m tests.benchmarks.run --from-json`"
    )


def test_rescue_costs_are_rendered_from_the_stored_results(results: dict[str, Any]) -> None:
    page = (DOCS / "rescue.md").read_text(encoding="utf-8")
    assert page == with_rescue_costs(page, results), (
        "docs/rescue.md's Costs differ from the results: run "
        "`python -m tests.benchmarks.run --from-json`"
    )


def test_rescue_page_quotes_the_sessions_benchmark(results: dict[str, Any]) -> None:
    """The failure among eight servers, sessions on the healthy servers broken."""
    text = " ".join((DOCS / "rescue.md").read_text(encoding="utf-8").split())
    match = re.search(
        r"(\d+) of the (\d+) sessions on the \*healthy\* servers broken \((\d+)%\)", text
    )
    assert match, "docs/rescue.md no longer quotes §4's failure among eight"
    (row,) = [
        r
        for r in results["sessions"]
        if r["event"] == "failure" and r["servers"] == 8 and not r["rescue"]
    ]
    healthy = row["sessions"] - row["on_affected"]
    broken = row["broken_on_others"]
    assert (int(match[1]), int(match[2])) == (broken, healthy)
    assert int(match[3]) == round(100 * broken / healthy)


PROCESS_WORDS = re.compile(
    r"\bthe lead\b|\bissue \d|\bround \d|\bintegrator\b|\bhelper engineer|\bbrief\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    "path",
    [
        REPO / "README.md",
        REPO / "CHANGELOG.md",
        REPO / "containerlab" / "README.md",
        *sorted(DOCS.glob("*.md")),
        *sorted((DOCS / "benchmarks").glob("*.md")),
    ],
    ids=lambda path: path.name,
)
def test_no_process_words(path: Path) -> None:
    """Operators' documents do not speak of how the project was organised."""
    found = PROCESS_WORDS.findall(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(REPO)}: {found}"
