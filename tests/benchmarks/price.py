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
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.benchmarks.common import machine
from tests.benchmarks.rescue import iperf_run
from tests.integration.rescue.rescuelab import SERVERS, RescueLab, rescue_lab, write_config
from tests.lablib import REPO_ROOT

CASES = ("off", "on", "on, clamp inert", "on, no MSS clamp")
"""*clamp inert*: ``underlay_mtu: 1550`` makes the clamp's MSS 1460, what the client
sends anyway: the clamp's rule runs on every packet but changes nothing, so the
difference to *on* is the smaller segments alone."""
CONFIG_EXTRA = {"on, clamp inert": "  underlay_mtu: 1550", "on, no MSS clamp": "  clamp_mss: false"}
IDLE = (
    "pv_native_safe_halt",
    "default_idle",
    "cpu_idle_poll",
    "poll_idle",
    "intel_idle",
    "acpi_idle",
    "mwait_idle",
    "native_safe_halt",
)
GROUPS = (
    ("MSS clamp (nft_exthdr)", ("nft_exthdr",)),
    ("nftables rules", ("nft_", "nf_tables", "__nft")),
    (
        "conntrack",
        (
            "nf_conntrack",
            "nf_ct_",
            "__nf_conntrack",
            "tcp_in_window",
            "hash_conntrack",
            "nf_confirm",
            "ipv4_conntrack",
            "ipv6_conntrack",
            "__nf_ct",
            "nf_nat",
        ),
    ),
    ("netfilter hooks", ("nf_hook_slow", "nf_hook")),
)
_LINE = re.compile(r"^\s*([\d.]+)%\s+\[([k.])\]\s+(\S+)")


def group_of(symbol: str) -> str:
    """The cost group a kernel symbol belongs to ('other' if none)."""
    for name, prefixes in GROUPS:
        if symbol.startswith(prefixes):
            return name
    return "other"


def shares(report: str) -> dict[str, Any]:
    """Per group and top symbols, the percent of busy samples (idle loops left out) in
    ``perf report --stdio --sort sym``; user-space symbols count as 'user'."""
    groups: dict[str, float] = {}
    symbols: dict[str, float] = {}
    for line in report.splitlines():
        match = _LINE.match(line)
        if not match or match.group(3).startswith(IDLE):
            continue
        percent, kind, symbol = float(match.group(1)), match.group(2), match.group(3)
        group = group_of(symbol) if kind == "k" else "user"
        groups[group] = groups.get(group, 0.0) + percent
        symbols[symbol] = symbols.get(symbol, 0.0) + percent
    busy = sum(groups.values()) or 1.0
    top = sorted(symbols.items(), key=lambda item: -item[1])[:25]
    return {
        "busy_percent": round(busy, 2),
        "groups": {k: round(100 * v / busy, 2) for k, v in groups.items()},
        "top": [(s, round(100 * p / busy, 2)) for s, p in top],
    }


def _set_case(lab: RescueLab, case: str, configs: dict[str, Path]) -> None:
    # Every case starts from a removed data path: a reinstall from another config would
    # be a diff, and the clamp's chain must really go.
    lab.remove_all()
    if case != "off":
        lab.install_all(configs.get(case))
    lab.set_paths(["s3"])


def _profile(lab: RescueLab, seconds: float, workdir: Path, tag: str) -> dict[str, Any]:
    data = workdir / f"perf-{tag.replace(' ', '_').replace(',', '')}.data"
    record = subprocess.Popen(
        ["perf", "record", "-a", "-F", "499", "-o", str(data), "--", "sleep", str(seconds - 2)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result = iperf_run(lab, seconds, reverse=False, switch_after=None)
    record.wait(timeout=60)
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {"gbit_per_s": result["gbit_per_s"], **shares(report)}


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
    ]
    names = [name for name, _ in GROUPS] + ["other", "user"]
    lines += [
        "",
        "Share of the machine's busy samples (idle loops left out) during one run per case (%):",
        "",
        "| group | " + " | ".join(CASES) + " |",
        "|---|" + "---|" * len(CASES),
    ]
    for name in names:
        cells = [f"{results['profiles'][c]['groups'].get(name, 0.0):.1f}" for c in CASES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
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
