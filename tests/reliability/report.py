"""Turn ``results/reliability.json`` into the results table of ``docs/reliability.md``.

    python -m tests.reliability.report [--results FILE] [--doc FILE] [--check]

The table goes between the ``<!-- results:begin -->`` and ``<!-- results:end -->``
markers of the document; everything else in it is hand-written and left alone. With
``--check`` nothing is written and the exit code says whether the table is current.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"

# Faults covered elsewhere, listed so the table is the whole picture.
REFERENCED: list[dict[str, Any]] = [
    {
        "fault": "address_removed_from_lo",
        "injected": "anycast address deleted from lo while announced",
        "test": "tests/integration/sidecar/test_sidecar_frr.py::"
        "test_withdraws_when_the_address_leaves_lo",
        "survived": None,
        "stale_routes": None,
        "lost_routes": None,
        "figures": {},
        "notes": "covered by the integration suite (withdrawn, re-announced when it returns)",
    },
]

ORDER = [
    "exabgp_sigkill",
    "sidecar_sigkill",
    "leaf_frr_restart",
    "link_cut_link-down",
    "link_cut_blackhole",
    "service_flapping",
    "stuck_checks",
    "scale_1000_services_200_prefixes",
    "address_removed_from_lo",
    "tcp_md5",
    "unprivileged_user",
    "no_cap_net_admin",
]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return str(value)


def _figures(figures: dict[str, Any]) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = " / ".join(str(v) for v in value)
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts).replace("|", "\\|")


def render_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table (and notes) for ``rows``."""
    rank = {name: index for index, name in enumerate(ORDER)}
    rows = sorted(rows, key=lambda row: (rank.get(row["fault"], len(ORDER)), row["fault"]))
    lines = [
        "| # | fault injected | survived | stale routes | lost routes | figures |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for number, row in enumerate(rows, 1):
        figures = _figures(row.get("figures") or {})
        if row.get("notes"):
            notes.append(f"{number}. `{row['fault']}`: {row['notes']}")
        lines.append(
            f"| {number} | **{row['fault']}**: {row['injected']} | {_cell(row['survived'])} "
            f"| {_cell(row['stale_routes'])} | {_cell(row['lost_routes'])} | {figures} |"
        )
    recorded = sorted({row["recorded_at"] for row in rows if row.get("recorded_at")})
    footer = [""]
    if recorded:
        span = recorded[0] if len(recorded) == 1 else f"{recorded[0]} to {recorded[-1]}"
        footer.append(
            f"Recorded {span} (UTC) by `make reliability`; times in seconds, memory in MiB."
        )
    if notes:
        footer += ["", "Notes:", "", *notes]
    return "\n".join(lines + footer)


def update(doc: str, table: str) -> str:
    """``doc`` with the text between the markers replaced by ``table``."""
    if BEGIN not in doc or END not in doc:
        return doc.rstrip() + f"\n\n## Results\n\n{BEGIN}\n{table}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results" / "reliability.json")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "reliability.md")
    parser.add_argument("--check", action="store_true", help="fail if the doc is out of date")
    args = parser.parse_args(argv)
    try:
        rows = json.loads(args.results.read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError) as error:
        print(
            f"cannot read {args.results}: {error}; run `pytest tests/reliability` first",
            file=sys.stderr,
        )
        return 2
    known = {row["fault"] for row in rows}
    rows = rows + [row for row in REFERENCED if row["fault"] not in known]
    doc = args.doc.read_text(encoding="utf-8") if args.doc.exists() else "# Reliability\n"
    new = update(doc, render_table(rows))
    if args.check:
        return 0 if new == doc else 1
    args.doc.write_text(new, encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
