"""The rescue scale benchmark at its tiniest (8 members, 2 leaves x 4): it runs, the fabric
spreads sessions over both leaves and every member, the group is learnt, and the report
renders. Not a measurement: ``make bench-scale`` runs N = 16 and 64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks import scale, scalelab
from tests.benchmarks.scalelab import ScaleLab
from tests.integration.rescue.rescuelab import require_rescue_host
from tests.lablib import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_rescue_host()
    return scale.run((scale.TINY,), tmp_path_factory.mktemp("scale"))


def test_the_committed_lab_is_the_generators_output(tmp_path: Path) -> None:
    """containerlab/rescue64 is what scalelab writes for 4 x 16: nobody edited one alone."""
    scalelab.write(ScaleLab(4, 16), tmp_path)
    committed = REPO_ROOT / "containerlab" / "rescue64"
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file():
            relative = path.relative_to(tmp_path)
            assert (committed / relative).read_text() == path.read_text(), relative


def test_both_kinds_of_member_serve_and_the_group_is_learnt(results: dict[str, Any]) -> None:
    (size,) = results["sizes"]
    assert (size["members"], size["sidecars"], size["data_path_only"]) == (8, 4, 4)
    withdrawal, addition = size["events"]
    # Before the withdrawal all 8 answer: data-path-only members get flows from their leaf.
    assert withdrawal["servers_answering"] == 8, withdrawal
    assert 0 < withdrawal["on_leaf1"] < withdrawal["sessions"], withdrawal
    assert addition["servers_answering"] == 7, addition  # the affected one was out
    assert size["timing"]["membership_learnt_seconds"] > 0
    assert size["idle_sidecar"]["sidecars"] == 4
    assert size["idle_sidecar"]["rss_mib_median"] > 0


def test_each_event_moves_flows_and_counts_the_underlay(results: dict[str, Any]) -> None:
    for row in results["sizes"][0]["events"]:
        assert row["next_hops_before"] != row["next_hops_after"], row
        counters = row["counters"]
        # Moved sessions sent packets that members handed to their owners.
        assert counters["rescued"] > 0, row
        assert counters["underlay_sent"] >= counters["rescued"], row
        assert row["underlay_per_rescued"] is not None, row
        assert row["window_seconds"] > 0, row


def test_the_section_renders(results: dict[str, Any]) -> None:
    text = scale.render(results)
    assert "## Rescue at group sizes 16 and 64" in text
    assert "| 8 | withdrawal |" in text
    assert "| 8 | addition |" in text
