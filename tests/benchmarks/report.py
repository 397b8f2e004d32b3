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

Results = dict[str, Any]


def _ms(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value * 1000:.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


# -- targets -----------------------------------------------------------------------------


def targets(results: Results) -> list[tuple[str, bool | None, str]]:
    """(target, hit?, the numbers) for every target of the issue."""
    out: list[tuple[str, bool | None, str]] = []
    by_key = {(r["system"], r["interval"]): r for r in results["withdraw"]}
    for (system, interval), row in sorted(by_key.items()):
        if system != "sidecar" or ("healthcheck", interval) not in by_key:
            continue
        mine = row["summary"].get("withdraw_leaf", {}).get("p99", math.nan)
        theirs = (
            by_key[("healthcheck", interval)]["summary"]
            .get("withdraw_leaf", {})
            .get("p99", math.nan)
        )
        out.append(
            (
                f"withdraw p99 (leaf FIB) <= healthcheck's, interval {interval:g} s",
                None if math.isnan(mine) or math.isnan(theirs) else mine <= theirs,
                f"sidecar {_ms(mine)} ms vs healthcheck {_ms(theirs)} ms",
            )
        )
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
                f"{ratio:.1f}x ({_num(mine_row['cpu_per_1000_probes'], 3)} vs "
                f"{_num(theirs_row['cpu_per_1000_probes'], 3)} CPU s per 1,000 probes)",
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
    return out


# -- plots -------------------------------------------------------------------------------


def plot_withdraw(results: Results, path: Path) -> None:
    rows = results["withdraw"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in (
        (axes[0], "withdraw_leaf", "kill -> gone from leaf1 FIB"),
        (axes[1], "announce_leaf", "service back -> in leaf1 FIB"),
    ):
        data = [r["samples"][key] or [0.0] for r in rows]
        labels = [f"{r['system']}\n{r['interval']:g}s/f{r['fall']}" for r in rows]
        ax.boxplot(data, tick_labels=labels, whis=(0, 100))
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=8)
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
        "| system | interval / fall / rise | trials (missed) | kill -> leaf FIB p50 / p95 / p99 "
        "| kill -> spine FIB p99 | detection p50 | decision -> ack p99 | ack -> leaf FIB p50 "
        "| back -> leaf FIB p50 / p99 | back -> spine FIB p99 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["withdraw"]:
        s = r["summary"]

        def get(key: str, q: str, s: dict[str, Any] = s) -> str:
            return _ms(s[key][q]) if key in s else "n/a"

        lines.append(
            f"| {r['system']} | {r['interval']:g} s / {r['fall']} / {r['rise']} "
            f"| {r['trials']} ({r['missed']}) "
            f"| {get('withdraw_leaf', 'p50')} / {get('withdraw_leaf', 'p95')} / "
            f"{get('withdraw_leaf', 'p99')} | {get('withdraw_spine', 'p99')} "
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
            else f"period {_num(r.get('mean_period'), 3)} s"
            if r.get("mean_period")
            else ""
        )
        name = r["system"] + (" (**extrapolated**)" if r.get("extrapolated") else "")
        lines.append(
            f"| {name} | {r['services']} | {_num(r.get('duration'), 0)} | {r.get('probes', '')} "
            f"| {_num(r.get('cpu_seconds'))} | {_num(r['cpu_per_1000_probes'], 3)} "
            f"| {_num(r['cpu_percent'], 1)} | {_num(r['rss_mib'], 0)} "
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
            f"| {r['system']} | {_num(r['cpu_percent'], 2)} | {_num(r['rss_mib'], 0)} "
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
            f"| {_num(r['cpu_percent'], 0)} | {_ms(lag['p50'])} / {_ms(lag['p95'])} / "
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
    m = results["machine"]
    run = results["run"]
    lines = [
        "# Benchmarks: anycast-announcer next to ExaBGP's healthcheck",
        "",
        f"Generated by `python -m tests.benchmarks.run{' --quick' if run['quick'] else ''}` "
        f"(`make bench`) on {run['date']}: **{'quick' if run['quick'] else 'full'} run**"
        + (" (tiny sizes: read the shapes, not the decimals)." if run["quick"] else "."),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, FRR {m['frr']}, ExaBGP {m['exabgp']}. The cores were shared "
        "with other test runs unless the lead regenerated this in a quiet period.",
        "",
        *[
            f"Rerun on {rerun['date']} ({'quick' if rerun['quick'] else 'full'} sizes, "
            f"`--only {','.join(rerun.get('sections', []))}`): those sections are newer."
            for rerun in run.get("reruns", [])
        ],
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
        "flap dampening is off (every trial is a deliberate flap; healthcheck has none).",
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
        "srv1 alone announces 10.255.0.1/32; each trial kills its service at a random point "
        "of the probe schedule. Times in ms. *detection*: kill -> sidecar's "
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
        *_sessions_table(results),
        "",
        "![sessions](benchmarks/sessions.png)",
        "",
        *rescue_report.section(results),
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    path = docs / "benchmarks.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
