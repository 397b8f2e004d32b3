"""Turn the benchmark results into docs/benchmarks.md, JSON files and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from tests.benchmarks import rescue_report
from tests.benchmarks.common import number

Results = dict[str, Any]


def _ms(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value * 1000:.0f}"


# -- targets -----------------------------------------------------------------------------


Target = tuple[str, bool | None, str]

KILL_SPEEDUP = {1.0: 20.0, 0.2: 3.0}
"""Issue 11: the sidecar's kill -> leaf FIB p99 this many times below healthcheck's."""
STOP_BOUND = 0.150
ADDRESS_BOUND = 0.100
CHURN_BOUND_PERCENT = 2.0
EQUAL_TIME_RATIO = 50.0


def _p99(row: dict[str, Any], key: str) -> float:
    return float(row["summary"].get(key, {}).get("p99", math.nan))


def _sources(row: dict[str, Any]) -> str:
    sources = row.get("sources") or {}
    return ", ".join(f"{name} {count}" for name, count in sorted(sources.items())) or "n/a"


def _stop_targets(results: Results) -> list[Target]:
    """Issue 11: every stop withdraws in < 150 ms, and so many times faster than polling."""
    out: list[Target] = []
    rows = {(r["system"], r.get("stop", "kill"), r["interval"]): r for r in results["withdraw"]}
    for (system, stop, interval), row in sorted(rows.items()):
        if system != "sidecar":
            continue
        leaf, spine = _p99(row, "withdraw_leaf"), _p99(row, "withdraw_spine")
        verb = "SIGKILL" if stop == "kill" else "graceful stop"
        missed = f"; {row['missed']} missed" if row["missed"] else ""
        out.append(
            (
                f"{verb} -> leaf and spine FIB p99 < {_ms(STOP_BOUND)} ms, interval {interval:g} s",
                None if math.isnan(spine) else spine < STOP_BOUND and not row["missed"],
                f"leaf {_ms(leaf)} ms, spine {_ms(spine)} ms; withdrawn by: {_sources(row)}"
                + missed,
            )
        )
        theirs = rows.get(("healthcheck", stop, interval))
        want = KILL_SPEEDUP.get(interval)
        if stop != "kill" or theirs is None or want is None:
            continue
        ratio = _p99(theirs, "withdraw_leaf") / leaf
        out.append(
            (
                f"SIGKILL: >= {want:g}x faster than healthcheck (leaf FIB p99), "
                f"interval {interval:g} s",
                None if math.isnan(ratio) else ratio >= want,
                f"{ratio:.1f}x (healthcheck {_ms(_p99(theirs, 'withdraw_leaf'))} ms vs "
                f"sidecar {_ms(leaf)} ms)",
            )
        )
    return out


def _detection_targets(results: Results) -> list[Target]:
    """Issue 11: address removal, churn and cost at equal withdraw time."""
    found = results.get("detection")
    if not found:
        return []
    out: list[Target] = []
    mine = next((r for r in found["address"] if r["system"] == "sidecar"), None)
    if mine is not None:
        p99 = _p99(mine, "withdraw_leaf")
        out.append(
            (
                f"address removed from lo -> leaf FIB p99 < {_ms(ADDRESS_BOUND)} ms",
                None if math.isnan(p99) else p99 < ADDRESS_BOUND and not mine["missed"],
                f"{_ms(p99)} ms (sidecar's ack at {_ms(_p99(mine, 'to_ack'))} ms p99)",
            )
        )
    churn = found["churn"]
    on = next(r for r in churn["rows"] if r["listener_events"])
    quiet = not any(r["withdrawn"] or r["downs"] for r in churn["rows"])
    added = churn["event_path_cpu_percent"]
    out.append(
        (
            f"churn ({on['connections_per_second']:,.0f} conn/s): event path adds "
            f"< {CHURN_BOUND_PERCENT:g}% of a core, nothing withdrawn",
            added < CHURN_BOUND_PERCENT and quiet,
            f"{added:+.2f}% of a core; "
            f"{'nothing withdrawn' if quiet else 'WITHDRAWN'}; listener "
            f"{_listener_events(on)}",
        )
    )
    equal = found["equal_time_cost"]
    out.append(
        (
            f"cost at equal withdraw time, {equal['sidecar_cost']['services']} services: "
            f">= {EQUAL_TIME_RATIO:g}x less CPU per service-second than healthcheck",
            equal["ratio_needed"] >= EQUAL_TIME_RATIO,
            f"{equal['ratio_needed']:.0f}x with the CPU healthcheck needs at "
            f"{_ms(equal['healthcheck_settings']['interval'])} ms "
            f"({equal['ratio_measured']:.0f}x with what one core let it use)",
        )
    )
    return out


def _listener_events(row: dict[str, Any]) -> str:
    """How the sidecar's listener event counters moved over the windows."""
    moved = {
        "ignored" if "ignored" in key else "events": row["metrics_after"].get(key, 0.0) - value
        for key, value in row["metrics_before"].items()
        if 'source="listener"' in key
    }
    return ", ".join(f"{name} +{delta:.0f}" for name, delta in sorted(moved.items())) or "n/a"


def targets(results: Results) -> list[Target]:
    """(target, hit?, the numbers) for every target of the issues."""
    out = _stop_targets(results)
    by_key = {
        (r["system"], r["interval"]): r
        for r in results["withdraw"]
        if r.get("stop", "kill") == "kill"
    }
    for (system, interval), row in sorted(by_key.items()):
        if system != "sidecar":
            continue
        own = row["summary"].get("decision_to_ack", {}).get("p99", math.nan)
        to_fib = [
            a + b
            for a, b in zip(
                row["samples"]["decision_to_ack"], row["samples"]["ack_to_leaf_fib"], strict=True
            )
        ]
        fib = max(to_fib) if to_fib else math.nan
        out.append(
            (
                f"overhead after the deciding probe < 50 ms, interval {interval:g} s",
                None if math.isnan(own) else own < 0.05,
                f"decision -> ExaBGP ack p99 {_ms(own)} ms; decision -> leaf FIB max {_ms(fib)} ms",
            )
        )
    cost = {(r["system"], r["services"]): r for r in results["cost"]["rows"]}
    for row in results["cost"].get("extrapolated", []):
        cost.setdefault((row["system"], row["services"]), row)
    mine_row, theirs_row = cost.get(("sidecar", 50)), cost.get(("healthcheck", 50))
    if (
        mine_row
        and theirs_row
        and mine_row["cpu_per_1000_probes"]
        and theirs_row["cpu_per_1000_probes"]
    ):
        ratio = theirs_row["cpu_per_1000_probes"] / mine_row["cpu_per_1000_probes"]
        label = " (healthcheck extrapolated)" if theirs_row.get("extrapolated") else ""
        out.append(
            (
                f"at 50 services >= 20x less CPU per probe{label}",
                ratio >= 20,
                f"{ratio:.1f}x ({number(mine_row['cpu_per_1000_probes'], 3)} vs "
                f"{number(theirs_row['cpu_per_1000_probes'], 3)} CPU s per 1,000 probes)",
            )
        )
    big = cost.get(("sidecar", 500))
    if big:
        frac = big["lag_fraction_p99"]
        out.append(
            (
                "at 500 services schedule lag p99 < 10% of the interval",
                frac < 0.10,
                f"p99 {_ms(big['lag']['p99'])} ms = {frac * 100:.1f}% of {big['interval']:g} s",
            )
        )
    return out + _detection_targets(results)


# -- plots -------------------------------------------------------------------------------


def plot_withdraw(results: Results, path: Path) -> None:
    rows = results["withdraw"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    fig.set_size_inches(max(10, len(rows) * 1.4), 4)
    for ax, key, title in (
        (axes[0], "withdraw_leaf", "stop -> gone from leaf1 FIB"),
        (axes[1], "announce_leaf", "service back -> in leaf1 FIB"),
    ):
        data = [r["samples"][key] or [math.nan] for r in rows]
        labels = [
            f"{r['system']}\n{r.get('stop', 'kill')}\n{r['interval']:g}s/f{r['fall']}" for r in rows
        ]
        ax.boxplot(data, tick_labels=labels, whis=(0, 100))
        ax.set_yscale("log")  # events: tens of ms; polling: seconds
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_cost(results: Results, path: Path) -> None:
    rows = results["cost"]["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for system, marker in (("sidecar", "o"), ("healthcheck", "s")):
        mine = [r for r in rows if r["system"] == system and r["cpu_per_1000_probes"]]
        xs = [r["services"] for r in mine]
        axes[0].plot(xs, [r["cpu_per_1000_probes"] for r in mine], marker=marker, label=system)
        axes[1].plot(xs, [r["rss_mib"] for r in mine], marker=marker, label=system)
    for ax, label in ((axes[0], "CPU seconds per 1,000 probes"), (axes[1], "RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("TCP-checked services (interval 1 s)")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ceiling(results: Results, path: Path) -> None:
    rows = results["ceiling"]
    fig, ax = plt.subplots(figsize=(6, 4))
    rates = [r["probes"] / r["duration"] for r in rows]
    ax.plot(rates, [r["lag"]["p99"] * 1000 for r in rows], marker="o", label="lag p99")
    ax.plot(rates, [r["lag"]["p50"] * 1000 for r in rows], marker=".", label="lag p50")
    ax.axhline(100, linestyle="--", color="grey", label="10% of the 1 s interval")
    ax.set_xlabel("probes per second (sidecar pinned to one core)")
    ax.set_ylabel("schedule lag (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_sessions(results: Results, path: Path) -> None:
    pairs = rescue_report.session_pairs(results)
    fig, ax = plt.subplots(figsize=(13, 4))
    labels = [f"N={n}\n{event.replace('_', ' ')}" for n, event in pairs]
    xs = range(len(pairs))
    width = 0.2
    rows = list(pairs.values())

    def value(pair: dict[bool, dict[str, Any]], rescue: bool, key: str) -> float:
        row = pair.get(rescue)
        return float(row[key]) if row else 0.0

    first = [pair.get(False) or pair[True] for pair in rows]
    ax.bar(
        [x - 1.5 * width for x in xs],
        [value(p, False, "broken") for p in rows],
        width,
        label="broken, rescue off",
    )
    ax.bar(
        [x - 0.5 * width for x in xs],
        [value(p, True, "broken") for p in rows],
        width,
        label="broken, rescue on",
    )
    ax.bar(
        [x + 0.5 * width for x in xs],
        [r["hash_threshold_expected"] for r in first],
        width,
        label="hash-threshold expectation (kernel order)",
    )
    ax.bar(
        [x + 1.5 * width for x in xs],
        [r["floor"] for r in first],
        width,
        label="stateless-fabric floor",
    )
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylabel("sessions")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the document ------------------------------------------------------------------------


def _withdraw_table(results: Results) -> list[str]:
    lines = [
        "| system | stop | interval / fall / rise | trials (missed) "
        "| stop -> leaf FIB p50 / p95 / p99 "
        "| stop -> spine FIB p99 | withdrawn by | detection p50 | decision -> ack p99 "
        "| ack -> leaf FIB p50 | back -> leaf FIB p50 / p99 | back -> spine FIB p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["withdraw"]:
        s = r["summary"]

        def get(key: str, q: str, s: dict[str, Any] = s) -> str:
            return _ms(s[key][q]) if key in s else "n/a"

        lines.append(
            f"| {r['system']} | {r.get('stop', 'kill')} "
            f"| {r['interval']:g} s / {r['fall']} / {r['rise']} "
            f"| {r['trials']} ({r['missed']}) "
            f"| {get('withdraw_leaf', 'p50')} / {get('withdraw_leaf', 'p95')} / "
            f"{get('withdraw_leaf', 'p99')} | {get('withdraw_spine', 'p99')} "
            f"| {_sources(r) if r['system'] == 'sidecar' else 'probe'} "
            f"| {get('detection', 'p50')} | {get('decision_to_ack', 'p99')} "
            f"| {get('ack_to_leaf_fib', 'p50')} "
            f"| {get('announce_leaf', 'p50')} / {get('announce_leaf', 'p99')} "
            f"| {get('announce_spine', 'p99')} |"
        )
    return lines


def _cost_table(results: Results) -> list[str]:
    lines = [
        "| system | services | window (s) | probes | CPU s | CPU s / 1,000 probes | CPU % "
        "| RSS MiB | processes | lag p50 / p99 (ms) or mean period |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["cost"]["rows"] + results["cost"].get("extrapolated", []):
        extra = (
            f"{_ms(r['lag']['p50'])} / {_ms(r['lag']['p99'])}"
            if "lag" in r
            else f"period {number(r.get('mean_period'), 3)} s"
            if r.get("mean_period")
            else ""
        )
        name = r["system"] + (" (**extrapolated**)" if r.get("extrapolated") else "")
        lines.append(
            f"| {name} | {r['services']} | {number(r.get('duration'), 0)} | {r.get('probes', '')} "
            f"| {number(r.get('cpu_seconds'))} | {number(r['cpu_per_1000_probes'], 3)} "
            f"| {number(r['cpu_percent'], 1)} | {number(r['rss_mib'], 0)} "
            f"| {r.get('processes', '')} | {extra} |"
        )
    lines += [
        "",
        "Idle (one service probed once an hour: the cost of just being there):",
        "",
        "| system | CPU % | RSS MiB | processes |",
        "|---|---|---|---|",
    ]
    for r in results["cost"]["idle"]:
        lines.append(
            f"| {r['system']} | {number(r['cpu_percent'], 2)} | {number(r['rss_mib'], 0)} "
            f"| {r['processes']} |"
        )
    return lines


def _ceiling_table(results: Results) -> list[str]:
    lines = [
        "| services (1 s interval) | probes/s | sidecar CPU % of one core "
        "| lag p50 / p95 / p99 (ms) | p99 < 10% |",
        "|---|---|---|---|---|",
    ]
    for r in results["ceiling"]:
        lag = r["lag"]
        lines.append(
            f"| {r['services']} | {r['probes'] / r['duration']:.0f} "
            f"| {number(r['cpu_percent'], 0)} | {_ms(lag['p50'])} / {_ms(lag['p95'])} / "
            f"{_ms(lag['p99'])} | {'yes' if r['lag_fraction_p99'] < 0.1 else 'no'} |"
        )
    return lines


def _sessions_table(results: Results) -> list[str]:
    lines = [
        "| N | event | sessions | on affected server | broken, rescue off (affected / others) "
        "| broken, rescue on (affected / others) | stateless floor "
        "| hash-threshold expectation (kernel order) "
        "| same, had the order been kept (RFC 2992) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def broken(row: dict[str, Any] | None) -> str:
        if row is None:
            return "n/a"
        return f"**{row['broken']}** ({row['broken_on_affected']} / {row['broken_on_others']})"

    for (servers, event), pair in rescue_report.session_pairs(results).items():
        first = pair.get(False) or pair[True]
        lines.append(
            f"| {servers} | {event.replace('_', ' ')} | {first['sessions']} "
            f"| {first['on_affected']} | {broken(pair.get(False))} | {broken(pair.get(True))} "
            f"| {first['floor']:.0f} | {first['hash_threshold_expected']:.0f} "
            f"| {first['hash_threshold_order_kept']:.0f} |"
        )
    return lines


def _address_table(found: dict[str, Any]) -> list[str]:
    lines = [
        "| system | interval / fall | trials (missed) | removed -> leaf FIB p50 / p95 / p99 "
        "| removed -> sidecar's `address_changed` p50 | removed -> ExaBGP ack p99 "
        "| ack -> leaf FIB p50 | withdrawal reason | address back -> leaf FIB p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in found["address"]:
        s = r["summary"]

        def get(key: str, q: str, s: dict[str, Any] = s) -> str:
            return _ms(s[key][q]) if key in s else "n/a"

        reason = ", ".join(r["reasons"]) or ("probe failures" if r["system"] != "sidecar" else "")
        lines.append(
            f"| {r['system']} | {r['interval']:g} s / {r['fall']} | {r['trials']} ({r['missed']}) "
            f"| {get('withdraw_leaf', 'p50')} / {get('withdraw_leaf', 'p95')} / "
            f"{get('withdraw_leaf', 'p99')} | {get('detection', 'p50')} | {get('to_ack', 'p99')} "
            f"| {get('ack_to_leaf_fib', 'p50')} | {reason} | {get('back', 'p50')} |"
        )
    return lines


def _churn_table(found: dict[str, Any]) -> list[str]:
    churn = found["churn"]
    lines = [
        "| listener watch | watched | connections/s achieved (asked) | failed "
        "| sidecar CPU % idle | under churn | added | listener events over both windows "
        "| service down / route withdrawn |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in churn["rows"]:
        lines.append(
            f"| {'on' if r['listener_events'] else 'off (control)'} "
            f"| {', '.join(r['watched_targets']) or 'nothing'} "
            f"| {r['connections_per_second']:,.0f} ({r['asked_rate']:,.0f}) "
            f"| {r['failed_connections']} | {r['idle_cpu_percent']:.2f} "
            f"| {r['churn_cpu_percent']:.2f} | {r['added_cpu_percent']:+.2f} "
            f"| {_listener_events(r)} | {len(r['downs'])} / {'yes' if r['withdrawn'] else 'no'} |"
        )
    lines += [
        "",
        f"The event path's share: **{churn['event_path_cpu_percent']:+.2f}% of a core** (the "
        "increase with the watch on minus the increase with it off; windows of "
        f"{churn['rows'][0]['seconds']:g} s each, CPU read from /proc in 10 ms ticks).",
    ]
    return lines


def _equal_time_table(found: dict[str, Any]) -> list[str]:
    e = found["equal_time_cost"]
    ours, hc, alone = e["sidecar_cost"], e["healthcheck_cost"], e["healthcheck_alone"]
    mine, floor, theirs = e["sidecar_withdraw"], e["healthcheck_floor"], e["healthcheck_withdraw"]

    def settings(row: dict[str, Any]) -> str:
        interval = row["interval"]
        every = f"{interval:g} s" if interval >= 1 else f"{interval * 1000:g} ms"
        return f"{every} / fall {row['fall']}"

    def withdraw_cell(row: dict[str, Any]) -> str:
        return f"{_ms(_p99(row, 'withdraw_leaf'))} ({row['trials']}, {row['missed']} missed)"

    def rate(row: dict[str, Any]) -> str:
        return f"{row['probes'] / row['duration']:.0f}"

    target = "the sidecar's p99" if e["matched"] else "the issue's 150 ms bound"
    reach = (
        "healthcheck can reach it"
        if e["matched"]
        else "healthcheck cannot reach the sidecar's p99 at any interval: its floor is above it"
    )
    per_probe = e["healthcheck_cpu_per_probe"] * 1000
    return [
        "| system | settings | kill -> leaf FIB p99 ms (trials) | services | window s "
        "| probes/s | CPU % of a core | CPU ms per service-second |",
        "|---|---|---|---|---|---|---|---|",
        f"| sidecar | {settings(mine)} | {withdraw_cell(mine)} | {ours['services']} "
        f"| {ours['duration']:.0f} | {rate(ours)} | {ours['cpu_percent']:.2f} "
        f"| **{e['sidecar_cpu_per_service_second'] * 1000:.3f}** |",
        f"| healthcheck, floor | {settings(floor)} | {withdraw_cell(floor)} | | | | | |",
        f"| healthcheck, pinned to one core | {settings(theirs)} | {withdraw_cell(theirs)} "
        f"| {hc['services']} | {hc['duration']:.0f} | {rate(hc)} (period "
        f"{_ms(hc.get('mean_period'))} ms) | {hc['cpu_percent']:.0f} "
        f"| {e['healthcheck_cpu_per_service_second'] * 1000:.1f} (lower bound) |",
        f"| healthcheck, alone | {settings(theirs)} | | 1 | {alone['duration']:.0f} "
        f"| {rate(alone)} (period {_ms(alone.get('mean_period'))} ms) "
        f"| {alone['cpu_percent']:.1f} | |",
        f"| healthcheck, needed | {settings(theirs)} | | {hc['services']} | | "
        f"{hc['services'] / e['healthcheck_unloaded_period']:.0f} "
        f"| {e['healthcheck_needed_cpu_per_service_second'] * hc['services'] * 100:.0f} "
        f"| **{e['healthcheck_needed_cpu_per_service_second'] * 1000:.1f}** |",
        "",
        f"Target withdraw time: {target}, {_ms(e['target'])} ms ({reach}). "
        f"*Needed* = healthcheck's measured CPU per probe ({per_probe:.2f} ms, from the "
        "pinned run) x the probes per second it makes when not starved (one service "
        f"alone at the same interval). Ratio: **{e['ratio_needed']:.0f}x** needed, "
        f"{e['ratio_measured']:.0f}x against what one core let it use.",
    ]


def _detection_lines(results: Results) -> list[str]:
    found = results.get("detection")
    if not found:
        return []
    return [
        "## 6. Failures found by events",
        "",
        "The sidecar with its detection defaults (`listener_events` on, `fast_interval` = "
        "interval / 5, the address watch over rtnetlink). See `tests/benchmarks/detection.py` "
        "for the method of each table.",
        "",
        "### Address removed from lo",
        "",
        "`ip addr del 10.255.0.1/32 dev lo` in srv1 while the service keeps listening; "
        "`ip monitor address` in srv1 stamps the removal. healthcheck has no address watch: "
        "its check connects to an address that is no longer local, the SYN leaves through "
        "leaf1 and is dropped on its way back, so each check ends at its (whole-second) "
        "timeout, and it withdraws after `fall` of them.",
        "",
        *_address_table(found),
        "",
        "### Connection churn on the service port",
        "",
        "The client node opens and closes connections to 10.255.0.1:8080 through leaf1 at a "
        "paced rate (the server closes first); the service accepts and closes. Sidecar CPU "
        "is its process tree (sidecar + ExaBGP), interval 1 s, fall 2 (the defaults).",
        "",
        *_churn_table(found),
        "",
        "### Cost at equal withdraw time",
        "",
        "The sidecar relaxed to a 5 s interval still withdraws a killed service in "
        "milliseconds; healthcheck can only poll faster, at fall 1 (its fastest setting). "
        "Its interval: p99 = interval + fixed, with *fixed* from the floor run; each "
        "interval was then checked with kill trials of its own.",
        "",
        *_equal_time_table(found),
        "",
    ]


def _provenance(run: dict[str, Any]) -> list[str]:
    """A line per section when they come from different runs (``run --only``)."""
    sections = run.get("sections") or {}
    kinds = {(s["date"], s["quick"]) for s in sections.values()}
    if len(kinds) <= 1:
        return []
    lines = ["Sections come from different runs (`run --only`):", ""]
    for name, s in sections.items():
        lines.append(f"- {name}: {'quick' if s['quick'] else 'full'} run of {s['date']}")
    for name, error in (run.get("failed") or {}).items():
        lines.append(f"- {name} failed in the latest run ({error}); the stored result is shown")
    return [*lines, ""]


def write(results: Results, docs: Path, notes: list[str]) -> Path:
    """Write docs/benchmarks.md, docs/benchmarks/*.json and *.png; the markdown's path."""
    out = docs / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    for key, value in results.items():
        (out / f"{key}.json").write_text(
            json.dumps(value, indent=1, default=str) + "\n", encoding="utf-8"
        )
    plot_withdraw(results, out / "withdraw.png")
    plot_cost(results, out / "cost.png")
    plot_ceiling(results, out / "ceiling.png")
    plot_sessions(results, out / "sessions.png")
    path = docs / "benchmarks.md"
    path.write_text(render(results, notes), encoding="utf-8")
    return path


def render(results: Results, notes: list[str]) -> str:
    """The text of docs/benchmarks.md: every figure in it comes from ``results``."""
    m = results["machine"]
    run = results["run"]
    lines = [
        "# Benchmarks: anycast-announcer next to ExaBGP's healthcheck",
        "",
        f"Generated by `python -m tests.benchmarks.run{' --quick' if run['quick'] else ''}` "
        f"(`make bench`) on {run['date']}: **{'quick' if run['quick'] else 'full'} run**"
        + (" (tiny sizes: read the shapes, not the decimals)." if run["quick"] else "."),
        "",
        *_provenance(run),
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, FRR {m['frr']}, ExaBGP {m['exabgp']}. Other test runs may have "
        "shared the cores.",
        "",
        "Lab: `containerlab/bench/` (spine1 - leaf1 - srv1..srv8 + client, network namespaces,"
        " FRR on leaf1 and spine1). One clock: `time.time()` on this host; sidecar logs "
        "carry ISO UTC timestamps from the same clock.",
        "",
        "How each system is set up (matching settings): the sidecar with a `tcp` check; "
        "ExaBGP's healthcheck as an API process of one `exabgp server`, one healthcheck per "
        "service, `command = bash -c '</dev/tcp/10.255.0.1/PORT'`, `--withdraw-on-down`, "
        "`--debounce`, `--fast-interval` = `--interval`, same rise/fall, `--timeout` rounded up "
        "to whole seconds (it only takes integers), same link-bandwidth community. The sidecar's "
        "flap dampening is off (every trial is a deliberate flap; healthcheck has none); its "
        "event-driven detection has its defaults: the check targets the anycast address "
        "literal on srv1's lo, so the listener watch (sock_diag destroy events) applies, and "
        "`fast_interval` is interval / 5.",
        "",
        "## Targets",
        "",
        "| target | hit | numbers |",
        "|---|---|---|",
    ]
    for name, hit, numbers in targets(results) + rescue_report.targets(results):
        mark = "n/a" if hit is None else ("**hit**" if hit else "**miss**")
        lines.append(f"| {name} | {mark} | {numbers} |")
    lines += [
        "",
        "## 1. Withdraw and announce latency",
        "",
        "srv1 alone announces 10.255.0.1/32; each trial stops its service at a random point "
        "of the probe schedule: *kill* is SIGKILL, *graceful* is SIGTERM, on which the service "
        "closes its listener and exits. Times in ms. *withdrawn by*: the detection source "
        "the sidecar's log names for each trial (`listener`: the sock_diag destroy event; "
        "`probe`: the polling backstop). *detection*: stop -> sidecar's "
        "`service_state_changed` (down); *decision -> ack*: -> `route_withdrawn` (ExaBGP "
        "acknowledged); *ack -> leaf FIB*: -> `ip monitor route` in leaf1 saw the deletion. "
        "healthcheck logs nothing we can time, so only its end-to-end columns are filled. "
        "*back*: the restarted service listens -> the route is back.",
        "",
        *_withdraw_table(results),
        "",
        "![withdraw](benchmarks/withdraw.png)",
        "",
        "## 2. Cost",
        "",
        "CPU = utime+stime+cutime+cstime over the announcer's whole process tree (sidecar + "
        "ExaBGP; or ExaBGP + every healthcheck + the shells it forks, reaped into cutime), "
        "from /proc; RSS = sum of VmRSS of the tree at the end; probes = connections the "
        "listeners in srv1 saw in the window. BGP session to leaf1 up, prefix announced.",
        "",
        *_cost_table(results),
        "",
        "![cost](benchmarks/cost.png)",
        "",
        "## 3. Ceiling: schedule lag on one core",
        "",
        "The sidecar and its ExaBGP pinned to core 1 (`taskset`); the listeners stamp probe "
        "arrivals. Lag is measured from outside (the sidecar's own histogram is on "
        "/metrics): per service, "
        "the residual of each arrival against `first + n x interval`, above the service's "
        "least late arrival (a lower bound: the best probe counts as on time; the listener's "
        "own delay is included).",
        "",
        *_ceiling_table(results),
        "",
        "![ceiling](benchmarks/ceiling.png)",
        "",
        "## 4. Long-lived sessions broken per event",
        "",
        "N servers with equal bandwidth behind leaf1 (sidecar at interval 0.2 s, fall 2); "
        "the client holds long-lived sessions through leaf1's kernel ECMP "
        "(`fib_multipath_hash_policy=3` with `fib_multipath_hash_fields=0x0037`: source and "
        "destination address, protocol, source and destination port, with a per-router seed. "
        "Policy 1 would hash the same 5-tuple but reuse the hash the client's socket put on "
        "the packet, which veth carries across namespaces, so the lab would hash like no "
        "switch does). The event always hits srvN. *Floor*: what a stateless fabric cannot "
        "avoid (the failed or withdrawn server's sessions; the hash-space share an added "
        "server takes; the share a lighter server gives up; nothing for an honoured drain). "
        "*Hash-threshold expectation*: the share of the hash space whose next hop changes "
        "for the kernel's next-hop order before and after (RFC 2992 regions), times the "
        "sessions held; for N equal next hops losing the k-th, the flows moved off servers "
        "that did nothing wrong are ((k-1)(k-2) + (N-k)(N-k-1)) / (2N(N-1)) of all, "
        "(N-2)/2N at the ends and about 1/4 in the middle: RFC 2992's 1/4 to 1/2.",
        "",
        "*drain*: the sidecar's drain (`anycast-announcer drain` through its API) without "
        "a hook: it waits 1 s for connections that never end, announces GRACEFUL_SHUTDOWN, "
        "then withdraws; the service keeps running. *weight change*: the sidecar reloads "
        "(SIGHUP) a config with half the bandwidth. *rescue on*: flow rescue installed on "
        "srv1..srvN (`anycast-announcer rescue install`, all N servers members) before "
        "their sidecars start; section 5 has what it costs.",
        "",
        "Groups of 16 and 64 behind several leaves, with membership learnt from the "
        "fabric and the underlay packets each rescued packet costs: "
        "[benchmarks/scale.md](benchmarks/scale.md) (`make bench-scale`).",
        "",
        *_sessions_table(results),
        "",
        "![sessions](benchmarks/sessions.png)",
        "",
        *rescue_report.section(results),
        *_detection_lines(results),
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    return "\n".join(lines)
