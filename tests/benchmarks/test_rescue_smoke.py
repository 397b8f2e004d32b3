"""The flow rescue benchmark at tiny sizes: it runs and its report renders. Not a measurement.

``make bench`` (``python -m tests.benchmarks.run``) runs it at full size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks import rescue, rescue_report
from tests.integration.rescue.rescuelab import require_rescue_host
from tests.prerequisites import require_command

# The whole benchmark at tiny sizes is one module fixture: minutes on a loaded host.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_rescue_host()
    require_command("iperf3", "run `make test-deps`")
    return {"rescue": rescue.run(tmp_path_factory.mktemp("rescue"), True, rescue.TINY)}


def test_pmtud_rows_cover_both_families_and_modes(results: dict[str, Any]) -> None:
    rows = results["rescue"]["pmtud"]
    assert {(r["family"], r["rescue"]) for r in rows} == {
        (4, False),
        (6, False),
        (4, True),
        (6, True),
    }
    for row in rows:
        assert sum(row["completed"].values()) + sum(row["hung"].values()) + row["failed"] == 6
        if row["rescue"]:
            assert row["hung"] == {}


def test_throughput_rows_measure_something(results: dict[str, Any]) -> None:
    rows = results["rescue"]["throughput"]
    assert len(rows) == 9
    for row in rows:
        assert row["gbit_per_s"] > 0, row
        for run in row["runs"]:
            assert run["cpu_ticks"] >= 0, run
            # The measured window: the counted seconds (about one per interval), the
            # host's and each CPU's busy fraction.
            window = run["window"]
            assert 0 < window["wall_seconds"] <= run["intervals"] + 1, window
            assert 0 <= window["host_busy"] <= 1, window
            assert len(window["cpu_busy"]) >= 1, window
            assert window["gb"] > 0, window
        if row["rate"] == "max":  # unpaced, a core is busy the whole run
            assert row["cpu_seconds_per_gb"] > 0, row
        else:  # paced runs may stay under one 10 ms tick per GB; the row then says "<"
            assert row["cpu_seconds_per_gb"] >= 0, row
            assert row["cpu_tick_per_gb"] > 0, row
        if row["path"] == "rescued":
            assert row["copies_per_rescued"] is not None, row


def test_orphans_end_with_resets(results: dict[str, Any]) -> None:
    for row in results["rescue"]["orphans"]:
        assert row["on_dead_server"] > 0
        assert row["reset"] == row["on_dead_server"], row


def test_the_section_renders(results: dict[str, Any], tmp_path: Path) -> None:
    text = "\n".join(rescue_report.section(results))
    assert "## 5. Flow rescue" in text
    assert "| IPv6 | on |" in text
    names = [name for name, _, _ in rescue_report.targets(results)]
    assert any("PMTUD" in name or "large transfers" in name for name in names)


def test_flood_rows_count_the_underlay_and_the_sessions(results: dict[str, Any]) -> None:
    rows = results["rescue"]["flood"]
    assert [(r["sources"], r["members"]) for r in rows] == [("one", 4), ("one", 16), ("many", 16)]
    for row in rows:
        assert row["flood_sent"] > 0, row
        assert row["replicated"] > 0, row  # the flood reached the blind-copy rules
        assert row["underlay_sent"] >= row["replicated"], row
        assert row["sessions"] == 12, row
        assert row["blind_copies_per_second_max"] > 0, row
        assert row["blind_rate"] > 0, row
    # Spread over 16,384 client /24s, no source meets its own budget: the aggregate does
    # the limiting.
    for row in rows:
        if row["sources"] == "many":
            assert row["blind_source_limited"] == 0, row


def test_the_flood_table_renders(results: dict[str, Any]) -> None:
    text = "\n".join(rescue_report.section(results))
    assert "**Flood**" in text
    assert "| 16 |" in text
