"""Where a benchmark's results are published: its page under docs/benchmarks/ and its
paragraph in a docs page, between two marker comments (so a test can check that the
page says what the stored results say)."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.lablib import REPO_ROOT

Results = dict[str, Any]


def command_line(
    argv: Sequence[str] | None,
    *,
    description: str,
    name: str,
    runs: int,
    seconds: float,
    min_seconds: float,
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The options every interleaved benchmark takes (``--runs``, ``--seconds``,
    ``--docs``, ``--from-json``), parsed and checked; the parser too, for the
    benchmark's own checks."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs, help=f"runs per case (default {runs})")
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"seconds per run (>= {min_seconds:g})"
    )
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    parser.add_argument(
        "--from-json", action="store_true", help=f"only re-render from benchmarks/{name}.json"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds < min_seconds:
        parser.error(f"--runs must be 1 or more and --seconds {min_seconds:g} or more")
    return parser, args


def stored_or_run(
    args: argparse.Namespace, name: str, run: Callable[[Path, int, float], Results]
) -> Results:
    """With ``--from-json`` the stored ``benchmarks/<name>.json``; else ``run`` in a
    temporary directory, its results stored there first."""
    stored = args.docs / "benchmarks" / f"{name}.json"
    if args.from_json:
        results: Results = json.loads(stored.read_text(encoding="utf-8"))
        return results
    with tempfile.TemporaryDirectory(prefix=f"anycast-{name}-") as tmp:
        results = run(Path(tmp), args.runs, args.seconds)
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return results


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
