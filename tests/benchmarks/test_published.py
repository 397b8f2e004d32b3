"""The benchmarks' shared command line and result storage (pure, no lab)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.published import between_markers, command_line, stored_or_run


def test_options_are_checked_with_the_benchmarks_own_minimum(tmp_path: Path) -> None:
    _, args = command_line(
        ["--docs", str(tmp_path)], description="x", name="b", runs=9, seconds=8, min_seconds=5
    )
    assert (args.runs, args.seconds, args.docs, args.from_json) == (9, 8, tmp_path, False)
    with pytest.raises(SystemExit):
        command_line(
            ["--seconds", "4"], description="x", name="b", runs=9, seconds=8, min_seconds=5
        )
    with pytest.raises(SystemExit):
        command_line(["--runs", "0"], description="x", name="b", runs=9, seconds=8, min_seconds=5)


def test_a_run_is_stored_and_read_back_without_running(tmp_path: Path) -> None:
    ran: list[tuple[int, float]] = []

    def run(workdir: Path, runs: int, seconds: float) -> dict[str, object]:
        assert workdir.is_dir()
        ran.append((runs, seconds))
        return {"runs": runs}

    _, args = command_line(
        ["--docs", str(tmp_path), "--runs", "3"], description="x", name="b", runs=9,
        seconds=8, min_seconds=5,
    )  # fmt: skip
    assert stored_or_run(args, "b", run) == {"runs": 3}
    assert json.loads((tmp_path / "benchmarks" / "b.json").read_text()) == {"runs": 3}
    _, again = command_line(
        ["--docs", str(tmp_path), "--from-json"], description="x", name="b", runs=9,
        seconds=8, min_seconds=5,
    )  # fmt: skip
    assert stored_or_run(again, "b", run) == {"runs": 3}
    assert ran == [(3, 8)]


def test_text_between_markers_is_replaced_and_missing_markers_are_an_error() -> None:
    assert between_markers("a\n<b>\nold\n<e>\nz", "<b>", "<e>", "new") == "a\n<b>\nnew\n<e>\nz"
    with pytest.raises(ValueError, match="markers"):
        between_markers("no markers", "<b>", "<e>", "new")
