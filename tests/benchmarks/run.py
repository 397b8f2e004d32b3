"""Run every benchmark on one lab and write docs/benchmarks.md (+ JSON and PNG files).

    sudo .venv/bin/python -m tests.benchmarks.run [--quick] [--docs DIR]
    sudo .venv/bin/python -m tests.benchmarks.run --only withdraw,detection [--quick]
    sudo .venv/bin/python -m tests.benchmarks.run --only sessions,rescue
    sudo .venv/bin/python -m tests.benchmarks.run --from-json   # re-render the document only

Full size takes about fifty minutes on two cores; ``--quick`` a few minutes. ``--only``
runs the named sections and takes the others from the JSON files already in
``docs/benchmarks/``; ``run.json`` then records, per section, when and at which size it
ran, and the document's header says so.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from tests.benchmarks import cost, detection, rescue, sessions, withdraw
from tests.benchmarks.common import CheckSettings, bench_lab, machine
from tests.benchmarks.report import write
from tests.benchmarks.rescue_report import with_rescue_costs
from tests.benchmarks.sessions import EVENTS
from tests.lablib import REPO_ROOT

log = logging.getLogger("benchmarks")


@dataclass(frozen=True)
class Sizes:
    """How big each benchmark runs."""

    quick: bool
    trials: int
    sidecar_services: list[int]
    healthcheck_services: list[int]
    cost_seconds: float
    ceiling_services: list[int]
    ceiling_seconds: float
    servers: list[int]
    sessions: int
    withdraw_settings: tuple[CheckSettings, ...] = withdraw.SETTINGS
    events: tuple[str, ...] = field(default=EVENTS)
    withdraw_stops: tuple[str, ...] = withdraw.STOPS
    sidecar_trials: int | None = None
    """The sidecar's withdraw rows (default: ``trials``)."""
    detection_sizes: detection.Sizes = detection.FULL


FULL = Sizes(
    quick=False,
    trials=30,
    sidecar_trials=100,
    sidecar_services=[1, 50, 500],
    healthcheck_services=[1, 50],
    cost_seconds=60,
    ceiling_services=[500, 1000, 2000, 4000],
    ceiling_seconds=30,
    servers=[2, 4, 8],
    sessions=400,
)
QUICK = Sizes(
    quick=True,
    trials=3,
    sidecar_services=[1, 50, 500],
    healthcheck_services=[1, 10],
    cost_seconds=10,
    ceiling_services=[500, 2000],
    ceiling_seconds=10,
    servers=[2, 4, 8],
    sessions=200,
    detection_sizes=detection.QUICK,
)

STATIC_NOTES = [
    "healthcheck is measured at the sizes in the cost table only (each instance is a "
    "Python process of its own); rows marked *extrapolated* scale its measured per-probe "
    "CPU (constant: one fork+exec of a shell per probe) and fit RSS linearly through the "
    "measured points. They are estimates, not measurements.",
    "healthcheck sleeps `interval` after each check instead of keeping a schedule, so its "
    "period is interval + check time (the *mean period* column); a schedule lag does not "
    "apply to it.",
    "Quick runs have 3 trials per row: a p99 of 3 samples is their maximum. The full "
    "run decides the withdraw targets: 100 trials per sidecar row (a trial takes about a "
    "second; a p99 of 30 samples would be the 30th, so one trial that a busy moment of "
    "this shared machine delays would set it) and 30 per healthcheck row (up to 7 s each; "
    "its times are spread evenly over an interval, so their maximum is close to the "
    "true p99).",
    "Since the listener watch, the sidecar's kill and graceful rows do not depend on the "
    "probe interval: the kernel's destroy event and the confirming LISTEN dump take 1-3 "
    "ms, the decision and ExaBGP's ack a few more, and the rest is the fabric. ExaBGP's "
    "ack -> leaf1's FIB is a constant ~60 ms: FRR's bgpd runs its route-processing work "
    "queue 50 ms after the first item arrives (bgp_route.c, `process_queue->spec.hold = "
    "50`, not configurable in 8.4), then zebra's RIB queue waits its own 10 ms "
    "(`ZEBRA_RIB_PROCESS_HOLD_TIME`, `zebra work-queue` changes it). spine1's bgpd holds "
    "the leaf's withdrawal another 50 ms, hence spine = leaf + ~50 ms. healthcheck pays "
    "the same fabric path on top of fall x (interval + check time).",
    "Withdraw and announce times include the listener/FIB stamping path: `ip monitor "
    "route` read by a thread of the benchmark process (sub-millisecond).",
    "Weight change through an inbound route-map on leaf1 (`set extcommunity bandwidth`) "
    "made FRR 8.4.4 install 66/66 instead of 66/33 here, which is why the benchmark "
    "re-announces through ExaBGP instead.",
    "Sessions: FRR rebuilds the next-hop group on every change and does not keep the old "
    "order (the kernel order after a change often starts with a different next hop), so "
    "hash-threshold moves far more flows than RFC 2992's textbook case; the measured "
    "breaks follow the kernel-order expectation. Resilient next-hop groups would fix "
    "this but FRR 8.4 cannot install BGP routes through them.",
    "Profile (`python -m tests.benchmarks.profiling`, py-spy) at 500 services: IP "
    "literals skip the resolver (asyncio's getaddrinfo thread pool), queued inputs are "
    "applied in one batch, and the decision step is skipped when no state changed (most "
    "probe results change nothing). What remains per probe is the connect itself "
    "(`sock_connect`) and asyncio's scheduling around it.",
    "Schedule lag: probes are spread over the whole interval (they used to start in "
    "the first tenth, which made every service probe in the same 100 ms burst), and "
    "the sidecar exports `anycast_probe_schedule_lag_seconds` on /metrics; this "
    "benchmark still measures lag from outside, as a lower bound that includes the "
    "listener's own delay.",
]


def _cpu_note(results: dict[str, Any]) -> str:
    """Why the CPU target is missed, with the figures of this run's cost section."""
    rows = {(r["system"], r["services"]): r for r in results["cost"]["rows"]}
    for row in results["cost"].get("extrapolated", []):
        rows.setdefault((row["system"], row["services"]), row)
    idle = {r["system"]: r for r in results["cost"].get("idle", [])}
    mine, theirs = rows.get(("sidecar", 50)), rows.get(("healthcheck", 50))
    big, big_theirs = rows.get(("sidecar", 500)), rows.get(("healthcheck", 500))
    if not (mine and theirs and big and big_theirs and "sidecar" in idle):
        return "CPU target: the cost section of this run is incomplete."
    ratio = theirs["cpu_per_1000_probes"] / mine["cpu_per_1000_probes"]
    ratio_big = big_theirs["cpu_per_1000_probes"] / big["cpu_per_1000_probes"]
    idle_percent = idle["sidecar"]["cpu_percent"]
    # At 50 services and a 1 s interval the sidecar makes 50 probes a second, so the
    # idle process tree's CPU (ExaBGP's reactor, the sidecar's timers) is this much per probe.
    idle_per_probe_ms = idle_percent / 100 / 50 * 1000
    hit = "hit" if ratio >= 20 else "missed"
    extrapolated = " (extrapolated)" if big_theirs.get("extrapolated") else ""
    return (
        f"CPU target (20x less per probe than healthcheck at 50 services): {hit} at "
        f"{ratio:.1f}x. The sidecar costs {mine['cpu_per_1000_probes']:.3f} ms of CPU per "
        f"probe at 50 services, of which the idle process tree (ExaBGP's reactor and the "
        f"sidecar's timers, {idle_percent:.1f}% of a core with nothing to probe) is "
        f"{idle_per_probe_ms:.2f} ms; healthcheck costs "
        f"{theirs['cpu_per_1000_probes']:.3f} ms (a fork+exec of a shell per probe). The "
        f"ratio grows with the number of services as the idle share shrinks: "
        f"{ratio_big:.1f}x at 500 against healthcheck{extrapolated}. In absolute terms the "
        f"sidecar used {mine['cpu_percent']:.1f}% of a core at 50 services and "
        f"{big['cpu_percent']:.1f}% at 500, against {big_theirs['cpu_percent'] / 100:.2f} "
        f"cores{extrapolated} for healthcheck at 500. Reaching 20x at 50 services would "
        "need a probe engine outside Python or fewer wake-ups per probe (e.g. batching "
        "connects per tick)."
    )


def write_rescue_costs(results: dict[str, Any], docs: Path) -> Path:
    """Regenerate the measured bullets of rescue.md's Costs section; its path."""
    path = docs / "rescue.md"
    if path.exists() and results.get("rescue"):
        path.write_text(
            with_rescue_costs(path.read_text(encoding="utf-8"), results), encoding="utf-8"
        )
    return path


def notes(results: dict[str, Any]) -> list[str]:
    """The notes under the tables; those with figures are computed from ``results``."""
    return [*STATIC_NOTES[:-1], _cpu_note(results), STATIC_NOTES[-1]]


def _withdraw(lab: Lab, sizes: Sizes, workdir: Path) -> Any:
    log.info("withdraw latency: %d trials per row (sidecar %s)", sizes.trials, sizes.sidecar_trials)
    return withdraw.run(
        lab,
        sizes.trials,
        workdir,
        sizes.withdraw_settings,
        sizes.withdraw_stops,
        sizes.sidecar_trials,
    )


def _cost(lab: Lab, sizes: Sizes, workdir: Path) -> Any:
    log.info("cost: %s / %s services", sizes.sidecar_services, sizes.healthcheck_services)
    rows = cost.run(
        lab, sizes.sidecar_services, sizes.healthcheck_services, sizes.cost_seconds, workdir
    )
    rows["extrapolated"] = extrapolate(rows["rows"], sizes.sidecar_services)
    return rows


def _ceiling(lab: Lab, sizes: Sizes, workdir: Path) -> Any:
    log.info("ceiling: %s services", sizes.ceiling_services)
    return cost.ceiling(lab, sizes.ceiling_services, sizes.ceiling_seconds, workdir)


def _sessions(lab: Lab, sizes: Sizes, workdir: Path) -> Any:
    log.info("sessions: N = %s, rescue off and on", sizes.servers)
    return sessions.run(lab, sizes.servers, sizes.sessions, workdir, sizes.events)


def _detection(lab: Lab, sizes: Sizes, workdir: Path) -> Any:
    log.info("detection: address removed, churn, cost at equal withdraw time")
    return detection.run(lab, sizes.detection_sizes, workdir)


def _rescue(sizes: Sizes, workdir: Path) -> Any:
    log.info("rescue: PMTUD, throughput, orphans")
    rescue_dir = workdir / "rescue"
    rescue_dir.mkdir()
    return rescue.run(rescue_dir, sizes.quick)


ON_BENCH_LAB: dict[str, Callable[[Lab, Sizes, Path], Any]] = {
    "withdraw": _withdraw,
    "cost": _cost,
    "ceiling": _ceiling,
    "sessions": _sessions,
    "detection": _detection,
}
"""The sections that share the benchmark lab, in the order a full run takes them."""

ON_OWN_LAB: dict[str, Callable[[Sizes, Path], Any]] = {"rescue": _rescue}
"""The sections that build their own lab; they run after the benchmark lab is gone, so
its daemons take no CPU from their throughput figures."""

SECTIONS = (*ON_BENCH_LAB, *ON_OWN_LAB)
"""Every benchmark section, in the order a full run takes them."""


def collect(sizes: Sizes, workdir: Path, sections: tuple[str, ...] = SECTIONS) -> dict[str, Any]:
    """Deploy the benchmark lab once and run the ``sections`` at ``sizes``."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {
        "machine": machine(),
        "run": {
            "quick": sizes.quick,
            "date": date,
            "sizes": {
                k: asdict(v) if isinstance(v, detection.Sizes) else v
                for k, v in vars(sizes).items()
                if k != "withdraw_settings"
            },
            "sections": {},
            "failed": {},
        },
    }
    run = results["run"]

    def section(name: str, measure: Callable[[], Any]) -> None:
        # A section that fails must not cost the others' results (a full run is
        # an hour): it is logged, left out, and main() exits non-zero.
        try:
            results[name] = measure()
        except Exception as error:
            log.exception("section %s failed", name)
            run["failed"][name] = repr(error)
            return
        run["sections"][name] = {"date": date, "quick": sizes.quick}

    started = time.monotonic()
    on_bench_lab = [name for name in sections if name in ON_BENCH_LAB]
    if on_bench_lab:
        with bench_lab() as lab:
            for name in on_bench_lab:
                section(name, functools.partial(ON_BENCH_LAB[name], lab, sizes, workdir))
    for name in sections:
        if name in ON_OWN_LAB:
            section(name, functools.partial(ON_OWN_LAB[name], sizes, workdir))
    run["seconds"] = round(time.monotonic() - started)
    return results


def merge(stored: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """The stored results with the freshly run sections replacing theirs.

    ``run.sections`` keeps, for every section, the date and size of the run it came
    from (sections stored before this was recorded inherit the stored run's).
    """
    old_run = stored.get("run", {})
    sections = {
        name: {"date": old_run.get("date", "unknown"), "quick": old_run.get("quick", False)}
        for name in SECTIONS
        if name in stored
    }
    sections.update(old_run.get("sections", {}))
    sections.update(fresh["run"]["sections"])
    merged = {**stored, **fresh}
    merged["run"] = {**fresh["run"], "sections": sections}
    if not set(SECTIONS) <= set(merged):
        raise RuntimeError(f"no results for {sorted(set(SECTIONS) - set(merged))} anywhere")
    merged["run"]["quick"] = any(s["quick"] for s in sections.values())
    return merged


def stored_results(docs: Path) -> dict[str, Any]:
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((docs / "benchmarks").glob("*.json"))
    }


def extrapolate(rows: list[dict[str, Any]], wanted: list[int]) -> list[dict[str, Any]]:
    """healthcheck rows for service counts it was not measured at (clearly labelled)."""
    measured = sorted(
        (r for r in rows if r["system"] == "healthcheck"), key=lambda r: r["services"]
    )
    if len(measured) < 2:
        return []
    small, large = measured[0], measured[-1]
    per_service_rss = (large["rss_mib"] - small["rss_mib"]) / (
        large["services"] - small["services"]
    )
    out = []
    for n in wanted:
        if n <= large["services"]:
            continue
        rss = small["rss_mib"] + per_service_rss * (n - small["services"])
        cpu_percent = large["cpu_percent"] / large["services"] * n
        out.append(
            {
                "system": "healthcheck",
                "services": n,
                "extrapolated": True,
                "cpu_per_1000_probes": large["cpu_per_1000_probes"],
                "cpu_percent": cpu_percent,
                "rss_mib": rss,
                "processes": n + 1,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few minutes")
    parser.add_argument(
        "--docs",
        type=Path,
        default=REPO_ROOT / "docs",
        help="where benchmarks.md and benchmarks/ go",
    )
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="only re-render the document from the JSON files already there",
    )
    parser.add_argument(
        "--only",
        type=lambda text: tuple(text.split(",")),
        default=tuple(SECTIONS),
        help=f"comma-separated sections to run ({', '.join(SECTIONS)}); the others are "
        "taken from the stored JSON files",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.from_json:
        stored = stored_results(args.docs)
        print(write(stored, args.docs, notes(stored)))
        print(write_rescue_costs(stored, args.docs))
        return 0
    unknown = [name for name in args.only if name not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="anycast-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # ExaBGP and FRR read configs from here
        results = collect(QUICK if args.quick else FULL, workdir, args.only)
    if set(results["run"]["sections"]) != set(SECTIONS):
        results = merge(stored_results(args.docs), results)
    path = write(results, args.docs, notes(results))
    print(path)
    print(write_rescue_costs(results, args.docs))
    failed = results["run"]["failed"]
    if failed:
        print(f"failed sections (kept from the stored JSON): {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
