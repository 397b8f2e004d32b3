"""The price every packet pays for rescue: direct throughput with and without it, and where
the extra CPU goes.

Runs on the rescue test lab (three servers behind router r, client behind q; see
``tests.benchmarks.rescue``), r routing to s3 only, so nothing is rescued: every packet
only pays the ownership check. One iperf3 upload from the client per run, as fast as it
goes, in three cases **interleaved** run by run (so drifting host load hits all three
alike): rescue *off*, *on* (the data path as configured), and *on without the MSS
clamp* (``clamp_mss: false``), which separates the clamp's smaller segments from
conntrack and the rules. Medians over ``runs`` runs per case.

Then one ``perf record -a`` (whole machine, kernel stacks) per case over an iperf3 run
of the same kind, and the share of samples per kernel symbol, grouped: conntrack
(``nf_conntrack_*``, ``nf_ct_*``, ``tcp_in_window``...), nftables (``nft_*``, the MSS
clamp's ``nft_exthdr_*`` apart), the netfilter hook runner, and the rest. On one host
the client, routers and server share the two cores, so shares are of the whole lab.

    sudo .venv/bin/python -m tests.benchmarks.price [--runs 5] [--seconds 8]

Writes docs/benchmarks/price.{json,md}. Needs ``perf`` (Debian's linux-perf).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from tests.benchmarks import hostprofile
from tests.benchmarks.common import machine
from tests.benchmarks.hostprofile import CONNTRACK, Groups
from tests.benchmarks.rescue import iperf_run
from tests.integration.rescue.rescuelab import SERVERS, RescueLab, rescue_lab, write_config
from tests.lablib import REPO_ROOT

CASES = ("off", "on", "on, clamp inert", "on, no MSS clamp")
"""*clamp inert*: ``underlay_mtu: 1550`` makes the clamp's MSS 1460, what the client
sends anyway: the clamp's rule runs on every packet but changes nothing, so the
difference to *on* is the smaller segments alone."""
CONFIG_EXTRA = {"on, clamp inert": "  underlay_mtu: 1550", "on, no MSS clamp": "  clamp_mss: false"}
GROUPS: Groups = (
    ("MSS clamp (nft_exthdr)", ("nft_exthdr",)),
    ("nftables rules", ("nft_", "nf_tables", "__nft")),
    ("conntrack", CONNTRACK),
    ("netfilter hooks", ("nf_hook_slow", "nf_hook")),
)


def group_of(symbol: str) -> str:
    """The cost group a kernel symbol belongs to ('other' if none)."""
    return hostprofile.group_of(symbol, GROUPS)


def shares(report: str) -> dict[str, Any]:
    """Per group and top symbols, the percent of busy samples (idle loops left out) in
    ``perf report --stdio --sort sym``; user-space symbols count as 'user'."""
    return hostprofile.shares(report, GROUPS)


def _set_case(lab: RescueLab, case: str, configs: dict[str, Path]) -> None:
    # Every case starts from a removed data path: a reinstall from another config would
    # be a diff, and the clamp's chain must really go.
    lab.remove_all()
    if case != "off":
        lab.install_all(configs.get(case))
    lab.set_paths(["s3"])


def _profile(lab: RescueLab, seconds: float, workdir: Path, tag: str) -> dict[str, Any]:
    data = workdir / f"perf-{tag.replace(' ', '_').replace(',', '')}.data"
    result = iperf_run(lab, seconds, reverse=False, switch_after=None, profile=data)
    return {"gbit_per_s": result["gbit_per_s"], **shares(hostprofile.read_report(data))}


def run(workdir: Path, runs: int, seconds: float) -> dict[str, Any]:
    """Interleaved throughput runs, then one profile per case."""
    workdir.chmod(0o755)
    with rescue_lab(workdir) as lab:
        lab.reset()
        configs = {
            case: write_config(workdir / f"case{index}.yaml", extra=extra)
            for index, (case, extra) in enumerate(CONFIG_EXTRA.items())
        }
        rows: list[dict[str, Any]] = []
        for index in range(runs):
            for case in CASES:
                _set_case(lab, case, configs)
                result = iperf_run(lab, seconds, reverse=False, switch_after=None)
                rows.append({"run": index, "case": case, **result})
        profiles = {}
        for case in CASES:
            _set_case(lab, case, configs)
            profiles[case] = _profile(lab, seconds, workdir, case)
        lab.set_paths(SERVERS)
    medians = {
        case: statistics.median(r["gbit_per_s"] for r in rows if r["case"] == case)
        for case in CASES
    }
    return {"machine": machine(), "runs": rows, "medians": medians, "profiles": profiles}


def paired(rows: list[dict[str, Any]], case: str) -> list[float]:
    """Per round that ran both, ``case``'s rate over that round's *off* rate. Rounds run
    the cases back to back, so a drift of the host's speed between rounds cancels out
    of these ratios where it does not out of the medians."""
    by_round: dict[int, dict[str, float]] = {}
    for row in rows:
        by_round.setdefault(row["run"], {})[row["case"]] = row["gbit_per_s"]
    return [
        rates[case] / rates["off"]
        for _, rates in sorted(by_round.items())
        if case in rates and rates.get("off")
    ]


def render(results: dict[str, Any]) -> str:
    """The breakdown as Markdown."""
    medians = results["medians"]
    off = medians["off"]
    lines = [
        "## The price every packet pays (rescue installed, nothing rescued)",
        "",
        "Generated by `python -m tests.benchmarks.price` from `price.json`: iperf3 upload "
        "from the client to s3 on the rescue lab, cases interleaved run by run; then one "
        "`perf record -a` per case. Target: at most 5% below *off*.",
        "",
        "| case | runs | median Gbit/s | vs off | slowest - fastest run |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        rates = [r["gbit_per_s"] for r in results["runs"] if r["case"] == case]
        lines.append(
            f"| {case} | {len(rates)} | {medians[case]:.2f} "
            f"| {100 * (medians[case] / off - 1):+.1f}% | {min(rates):.1f} - {max(rates):.1f} |"
        )
    lines += [
        "",
        "A spread of runs within one case wider than the differences between the "
        "medians means the host's other work decided them, not rescue.",
        "",
        "Paired by round (each round runs the cases back to back: its case's rate over "
        "its *off* rate, so drift between rounds cancels):",
        "",
        "| case | rounds | median ratio | rounds within 5% of off or faster |",
        "|---|---|---|---|",
    ]
    for case in CASES[1:]:
        ratios = paired(results["runs"], case)
        if not ratios:
            continue
        within = sum(ratio >= 0.95 for ratio in ratios)
        lines.append(
            f"| {case} | {len(ratios)} | {100 * (statistics.median(ratios) - 1):+.1f}% "
            f"| {within} of {len(ratios)} |"
        )
    names = [name for name, _ in GROUPS] + ["other", "user", "other programs"]
    lines += [
        "",
        "Share of the machine's busy samples (idle loops left out) during one run per case "
        "(%; 'user' is iperf3's user space, 'other programs' any other program's work):",
        "",
        *hostprofile.share_table("group", names, CASES, results["profiles"], "groups"),
    ]
    lines += ["", "Top kernel symbols with rescue on (%):", ""]
    lines += [f"- `{s}` {p:.2f}" for s, p in results["profiles"]["on"]["top"][:15]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    if shutil.which("perf") is None:
        parser.error("perf is not installed: apt-get install linux-perf")
    with tempfile.TemporaryDirectory(prefix="anycast-price-") as tmp:
        results = run(Path(tmp), args.runs, args.seconds)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "price.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.docs / "price.md").write_text(render(results), encoding="utf-8")
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
