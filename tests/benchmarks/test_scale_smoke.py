"""The rescue scale benchmark at its tiniest (8 members, 2 leaves x 4): it runs, the fabric
spreads sessions of both families (IPv4 and IPv6, held through the same events) over both
leaves and every member, the group is learnt, events on a sidecar and on a data-path-only
member break nothing with rescue on, the same sidecar events break sessions with rescue
off (the control), and the report renders. Not a measurement: ``make bench-scale`` runs
N = 16 and 64.
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


def _rows(results: dict[str, Any], mode: str, kind: str) -> tuple[dict[str, Any], ...]:
    (size,) = results["sizes"]
    return tuple(r for r in size["events"] if (r["mode"], r["kind"]) == (mode, kind))


def _family(row: dict[str, Any], family: int) -> dict[str, Any]:
    """One family's part of an event's row (its sessions, next hops and counters)."""
    (part,) = (f for f in row["families"] if f["family"] == family)
    return dict(part)


FAMILIES = (4, 6)


def test_both_kinds_of_member_serve_and_the_group_is_learnt(results: dict[str, Any]) -> None:
    (size,) = results["sizes"]
    assert (size["members"], size["sidecars"], size["data_path_only"]) == (8, 4, 4)
    assert size["families"] == [4, 6]
    withdrawal, addition = _rows(results, "rescue", "sidecar")
    for family in FAMILIES:
        before, after = _family(withdrawal, family), _family(addition, family)
        # Before the withdrawal all 8 answer: data-path-only members get flows from their
        # leaf, in both families.
        assert (before["servers_answering"], before["failed_to_open"]) == (8, 0), before
        assert 0 < before["on_leaf"] < before["sessions"] == 96, before
        assert after["servers_answering"] == 7, after  # the affected one was out
    assert size["timing"]["membership_learnt_seconds"] > 0
    assert size["idle_sidecar"]["sidecars"] == 4
    assert size["idle_sidecar"]["rss_mib_median"] > 0


def test_each_event_moves_flows_and_rescue_breaks_none(results: dict[str, Any]) -> None:
    rows = _rows(results, "rescue", "sidecar") + _rows(results, "rescue", "data_path_only")
    assert [(r["affected"], r["event"]) for r in rows] == [
        ("m4", "withdrawal"),
        ("m4", "addition"),
        ("m8", "withdrawal"),
        ("m8", "addition"),
    ]
    for row in rows:
        for family in FAMILIES:
            part = _family(row, family)
            assert part["next_hops_before"] != part["next_hops_after"], part
            assert (part["broken_own"], part["broken_innocent"]) == (0, 0), part
            # Moved sessions of this family sent packets that members handed to their
            # owners (an IPv6 packet, too, in VXLAN over the IPv4 underlay).
            assert part["counters"]["rescued"] > 0, part
        counters = row["counters"]
        assert counters["rescued"] == sum(_family(row, f)["counters"]["rescued"] for f in FAMILIES)
        assert counters["underlay_sent"] >= counters["rescued"], row
        assert row["underlay_per_rescued"] is not None, row
        assert row["window_seconds"] > 0, row
        # Every sidecar keeps the whole group, a withdrawn member held down.
        assert row["sidecars_holding_group"] == 4, row


def test_a_data_path_only_withdrawal_takes_its_member_route(results: dict[str, Any]) -> None:
    """leaf2 stops originating m8's member route with its anycast next hop, as a sidecar's
    SIGTERM withdraws both, and brings it back with the addition."""
    withdrawal, addition = _rows(results, "rescue", "data_path_only")
    assert withdrawal["leaf"] == 2, withdrawal
    for family in FAMILIES:
        part = _family(withdrawal, family)
        assert part["on_affected"] > 0, part
        assert part["next_hops_after"] == 3, part  # its static route went, in both families
        assert _family(addition, family)["next_hops_after"] == 4, addition
    assert withdrawal["member_route_at_leaf1"] is False, withdrawal
    assert addition["member_route_at_leaf1"] is True, addition


def test_without_rescue_the_same_events_break_sessions(results: dict[str, Any]) -> None:
    """The control: the 0 broken above is rescue's doing."""
    withdrawal, addition = _rows(results, "control", "sidecar")
    for family in FAMILIES:
        gone, added = _family(withdrawal, family), _family(addition, family)
        assert gone["on_affected"] > 0, gone
        # Every session on the withdrawn member lands on another one, which has no socket.
        assert gone["broken_own"] == gone["on_affected"], gone
        assert added["broken_innocent"] > 0, added
    for row in (withdrawal, addition):
        assert row["counters"]["underlay_sent"] == 0, row
        assert row["sidecars_holding_group"] == 0, row
        assert row["member_route_at_leaf1"] is False, row  # no rescue, no member route
    assert not _rows(results, "control", "data_path_only")


def test_the_section_renders(results: dict[str, Any]) -> None:
    text = scale.render(results)
    assert "## Rescue at group sizes 16 and 64" in text
    for family in FAMILIES:
        assert f"| 8 | on | m4 (sidecar, leaf1) | withdrawal | 1 | IPv{family} |" in text
        assert f"| 8 | on | m8 (data-path-only, leaf2) | addition | 1 | IPv{family} |" in text
        assert f"| 8 | **off** | m4 (sidecar, leaf1) | addition | 1 | IPv{family} |" in text
    # Repeats and the event's own cells: tests/benchmarks/test_scale_report.py.
