"""Where a benchmark's results are published: its page under docs/benchmarks/ and its
paragraph in a docs page, between two marker comments (so a test can check that the
page says what the stored results say)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Results = dict[str, Any]


def between_markers(page: str, begin: str, end: str, text: str) -> str:
    """``page`` with the text between ``begin`` and ``end`` replaced by ``text``."""
    head, found_begin, rest = page.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found_begin or not found_end:
        raise ValueError(f"the page lacks the markers {begin!r} ... {end!r}")
    return f"{head}{begin}\n{text}\n{end}{tail}"


def publish(
    results: Results,
    *,
    report: Path,
    render: Callable[[Results], str],
    page: Path,
    markers: tuple[str, str],
    paragraph: str,
) -> None:
    """Write ``render(results)`` to ``report``, put ``paragraph`` between ``markers`` in
    ``page``, and print both."""
    report.write_text(render(results), encoding="utf-8")
    text = between_markers(page.read_text(encoding="utf-8"), *markers, paragraph)
    page.write_text(text, encoding="utf-8")
    print(render(results))
    print(paragraph)
