"""The BFD benchmark at its tiniest: every section produces sane figures. Not a measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks import bfd, bfd_jitter
from tests.lablib import require_lab_host

pytestmark = pytest.mark.integration


def test_jitter_rows_for_each_lag() -> None:
    """A quiet loop keeps the session up with no transmit held back; a 300 ms stall
    holds transmits back (the heartbeat guard works)."""
    rows = bfd_jitter.run(1.0, (0.0, 0.3))
    quiet, stuck = rows
    assert quiet["transmits"] > 10
    assert quiet["suppressed"] == 0
    assert quiet["state_at_end"] == "UP"
    assert stuck["suppressed"] > 0


def test_lab_sections_produce_figures(tmp_path: Path) -> None:
    require_lab_host()
    results = bfd.run(bfd.TINY, tmp_path)
    death = results["server_death"]["0.3x3"]
    assert death["trials"] == 1
    assert 0 < death["max_s"] < 5
    assert 0 < results["hung_sidecar"]["max_s"] < 5
    assert set(results["false_downs_under_load"]) == {"0.3x3"}
    assert "Whole-server death" in bfd.render(results)
