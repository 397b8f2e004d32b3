"""The rescued-upload ladder's pure parts: the summary, its steps, the rendering, the rules
h is given, and the conclusion docs/rescue.md carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.hairpin import (
    BEGIN,
    CASES,
    CONNTRACK_RULES,
    DUP_RULES,
    END,
    LADDER,
    THROUGH_H,
    conclusion,
    fwd_rules,
    render,
    summarize,
    with_conclusion,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"

RATES = {
    "direct": (16.0, 15.0, 17.0),
    "hairpin": (14.0, 13.0, 14.5),
    "vxlan": (12.0, 12.0, 11.0),
    "vxlan + conntrack": (11.0, 10.0, 11.5),
    "vxlan + conntrack + dup": (9.6, 9.0, 10.0),
    "rescued": (8.8, 8.0, 9.0),
    "vxlan, netdev fwd": (12.0, 11.2, 12.4),
    "rescued, netdev fwd": (10.4, 10.0, 11.0),
}


def rows() -> list[dict[str, Any]]:
    out = []
    for case, rates in RATES.items():
        for index, rate in enumerate(rates):
            out.append(
                {
                    "run": index,
                    "case": case,
                    "gbit_per_s": rate,
                    "host_busy": 0.5 + index / 10,
                    "cpu_busy": [0.5, 0.5],
                    "cpu_seconds_per_gb": 1.0 + index / 10,
                    "retransmits": 100 * index,
                    "h_received_bytes": 10**9,
                }
            )
    return out


def results() -> dict[str, Any]:
    return {
        "machine": {"cpu": "Test CPU", "cores": 2, "kernel": "6.1.0"},
        "seconds": 8,
        "switch_after": 2.0,
        "runs": rows(),
        "summary": summarize(rows()),
    }


def test_every_case_but_direct_and_the_rescued_one_goes_through_h() -> None:
    assert set(THROUGH_H) == set(CASES) - {"direct", "rescued", "rescued, netdev fwd"}
    assert CASES[:6] == LADDER


def test_medians_shares_of_direct_and_steps() -> None:
    summary = summarize(rows())
    assert summary["direct"]["gbit_per_s"] == 16.0
    assert summary["direct"]["of_direct"] == 1.0
    assert summary["direct"]["step"] is None
    assert summary["hairpin"]["of_direct"] == pytest.approx(14.0 / 16.0)
    # A step is the points of direct lost against the case before it on the ladder.
    assert summary["vxlan"]["step"] == pytest.approx((14.0 - 12.0) / 16.0)
    assert summary["rescued"]["step"] == pytest.approx((9.6 - 8.8) / 16.0)
    # The contrasts are no steps of the ladder.
    assert summary["vxlan, netdev fwd"]["step"] is None
    assert summary["rescued, netdev fwd"]["step"] is None
    assert summary["vxlan"]["min_gbit_per_s"] == 11.0
    assert summary["vxlan"]["max_gbit_per_s"] == 12.0
    assert summary["rescued"]["host_busy"] == pytest.approx(0.6)
    assert summary["rescued"]["retransmits"] == 100


def test_a_case_without_runs_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="rescued"):
        summarize([r for r in rows() if r["case"] != "rescued"])


def test_table_has_every_case_in_ladder_order() -> None:
    page = render(results())
    table = [line for line in page.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0].removeprefix("| ") for line in table] == list(CASES)
    assert "| vxlan | 12.00 | 11.00 - 12.00 | 75% | -12 |" in page
    assert "| direct | 16.00 | 15.00 - 17.00 | 100% |  |" in page


def test_h_forwards_with_conntrack_dup_or_fwd_only_toward_s3() -> None:
    assert "ct state established" in CONNTRACK_RULES
    assert 'dup to 10.77.0.2 device "vxh" drop' in DUP_RULES
    rules = fwd_rules("169.254.90.3", "anycast-rsc")
    assert 'type filter hook ingress device "eth1"' in rules
    # Only the benchmark's flow, and only toward the given address and device.
    assert 'ip daddr 10.255.0.1 tcp dport 5201 fwd ip to 169.254.90.3 device "anycast-rsc"' in rules


def test_conclusion_names_the_shape_and_rescues_own_cost() -> None:
    text = conclusion(results())
    assert "Gbit/s: hairpin 88%, vxlan 75%, vxlan + conntrack 69%," in text
    assert "keeps 60%; rescue's own rules cost 5 points more" in text
    assert "VXLAN encapsulation (12 points) and the `dup` (9 points)" in text
    assert "at most 60% busy" in text
    assert "keeps 75% through h and 65% on s1" in text


def test_a_part_that_costs_nothing_is_said_so_not_a_negative_cost() -> None:
    faster = results()
    faster["summary"]["rescued"]["of_direct"] = 0.61  # above the plain path's 60%
    text = conclusion(faster)
    assert "rescue's own rules cost nothing measurable on top of it (rescued 61%)" in text
    assert "-1 points" not in text
    faster["summary"]["rescued"]["of_direct"] = 0.59
    assert "rescue's own rules cost 1 point more" in conclusion(faster)
    faster["summary"]["hairpin"]["step"] = -0.01
    assert "| hairpin | 14.00 | 13.00 - 14.50 | 88% | +1 |" in render(faster)


def test_conclusion_goes_between_the_markers_only() -> None:
    page = f"before\n{BEGIN}\nold text\n{END}\nafter\n"
    done = with_conclusion(page, results())
    assert done.startswith(f"before\n{BEGIN}\n- **The rescued upload taken apart**")
    assert done.endswith(f"\n{END}\nafter\n")
    assert "old text" not in done
    with pytest.raises(ValueError, match="markers"):
        with_conclusion("no markers here", results())


def test_rescue_page_carries_the_stored_conclusion() -> None:
    """docs/rescue.md's paragraph is the one rendered from docs/benchmarks/hairpin.json."""
    stored = json.loads((DOCS / "benchmarks" / "hairpin.json").read_text(encoding="utf-8"))
    page = (DOCS / "rescue.md").read_text(encoding="utf-8")
    assert page == with_conclusion(page, stored), (
        "docs/rescue.md differs from hairpin.json: run "
        "`python -m tests.benchmarks.hairpin --from-json`"
    )
    assert (DOCS / "benchmarks" / "hairpin.md").read_text(encoding="utf-8") == render(stored)
