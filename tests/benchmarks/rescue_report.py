"""The flow rescue part of docs/benchmarks.md: its targets and its section (pure text)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from tests.benchmarks.common import number

Results = dict[str, Any]

__all__ = ["rescue_costs", "section", "session_pairs", "targets", "with_rescue_costs"]


def session_pairs(results: Results) -> dict[tuple[int, str], dict[bool, dict[str, Any]]]:
    """Sessions rows by (N, event), then by rescue off / on."""
    pairs: dict[tuple[int, str], dict[bool, dict[str, Any]]] = {}
    for row in results.get("sessions", []):
        pairs.setdefault((row["servers"], row["event"]), {})[bool(row.get("rescue"))] = row
    return pairs


def _innocent_broken(row: dict[str, Any]) -> int:
    """Sessions broken on servers that did nothing wrong (all but a failed server's)."""
    return int(row["broken_on_others"] if row["event"] == "failure" else row["broken"])


def _cpu(row: dict[str, Any]) -> str:
    """CPU seconds per GB; below one clock tick per GB it says so instead of 0."""
    tick = row.get("cpu_tick_per_gb")
    if row["cpu_seconds_per_gb"] == 0 and tick is not None:
        return f"< {tick:.3f}"
    return number(row["cpu_seconds_per_gb"], 3)


def targets(results: Results) -> list[tuple[str, bool | None, str]]:
    """(target, hit?, numbers) for the issue's rescue targets; [] without rescue results."""
    out: list[tuple[str, bool | None, str]] = []
    rescued = [r for r in results.get("sessions", []) if r.get("rescue")]
    if rescued:
        innocent = {f"N={r['servers']} {r['event']}": _innocent_broken(r) for r in rescued}
        out.append(
            (
                "rescue on: 0 sessions broken on servers that did nothing wrong, every event",
                all(v == 0 for v in innocent.values()),
                ", ".join(f"{k}: {v}" for k, v in innocent.items() if v) or "all 0",
            )
        )
        own = [r for r in rescued if r["event"] in ("withdrawal", "drain")]
        out.append(
            (
                "rescue on: a withdrawal or hook-less drain breaks 0 of the server's own",
                all(r["broken_on_affected"] == 0 for r in own),
                ", ".join(
                    f"N={r['servers']} {r['event']}: {r['broken_on_affected']}/{r['on_affected']}"
                    for r in own
                ),
            )
        )
        failures = [r for r in rescued if r["event"] == "failure"]
        out.append(
            (
                "rescue on: a failure breaks only the failed server's sessions",
                all(r["broken_on_others"] == 0 for r in failures),
                ", ".join(
                    f"N={r['servers']}: {r['broken_on_affected']}/{r['on_affected']} own, "
                    f"{r['broken_on_others']} others"
                    for r in failures
                ),
            )
        )
    rescue = results.get("rescue")
    if rescue:
        on = [r for r in rescue["pmtud"] if r["rescue"]]
        done = sum(sum(r["completed"].values()) for r in on)
        out.append(
            (
                "rescue on: 100% of large transfers through a lower-MTU link complete",
                all(not r["hung"] and not r["failed"] for r in on),
                f"{done} of {sum(r['count'] for r in on)}",
            )
        )
        floods = [r for r in rescue.get("flood", []) if "blind_allowed_per_second" in r]
        if floods:
            out.append(
                (
                    "under a flood, blind copies never exceed the configured budget",
                    all(
                        r["blind_copies_per_second_max"] <= r["blind_allowed_per_second"]
                        for r in floods
                    ),
                    ", ".join(
                        f"{r.get('sources', 'one')} N={r['members']}: "
                        f"{r['blind_copies_per_second_max']}/s of "
                        f"{r['blind_allowed_per_second']}/s"
                        for r in floods
                    ),
                )
            )
        ratios = _bulk_ratios(rescue["throughput"])
        out.append(
            (
                "a rescued bulk flow keeps >= 80% of direct throughput",
                all(ratio >= 0.8 for ratio in ratios.values()) if ratios else None,
                ", ".join(f"{k} {v:.0%}" for k, v in ratios.items()),
            )
        )
    return out


def _bulk_ratios(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Rescued / direct (rescue installed) median throughput, per direction and rate."""
    by = {(r["direction"], r.get("rate", "max"), r["path"], r["rescue"]): r for r in rows}
    ratios = {}
    for direction, rate in sorted({(k[0], k[1]) for k in by}):
        direct = by.get((direction, rate, "direct", True))
        rescued = by.get((direction, rate, "rescued", True))
        if direct and rescued and direct["gbit_per_s"]:
            label = direction if rate == "max" else f"{direction} at {rate}bit/s"
            ratios[label] = rescued["gbit_per_s"] / direct["gbit_per_s"]
    return ratios


def _pmtud_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| family | rescue | downloads | completed per server | hung per server |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        completed = ", ".join(f"{k} {v}" for k, v in r["completed"].items()) or "none"
        hung = ", ".join(f"{k} {v}" for k, v in r["hung"].items()) or "**none**"
        lines.append(
            f"| IPv{r['family']} | {'on' if r['rescue'] else 'off'} | {r['count']} "
            f"| {completed} | {hung} |"
        )
    return lines


def _throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| direction | rate | path | rescue installed | Gbit/s (median of runs) | best | "
        "CPU s per GB (whole host) | overlay copies per rescued packet |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['direction']} | {r.get('rate', 'max')} | {r['path']} "
            f"| {'yes' if r['rescue'] else 'no'} "
            f"| {number(r['gbit_per_s'])} | {number(r['best_gbit_per_s'])} "
            f"| {_cpu(r)} | {number(r['copies_per_rescued'], 3)} |"
        )
    return lines


def _orphans_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| case | sessions on the dead server | ended by a reset | broken elsewhere "
        "| seconds to the reset p50 / max |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["seconds_to_reset"]
        lines.append(
            f"| {r['case']} | {r['on_dead_server']} | {r['reset']} | {r['broken_elsewhere']} "
            f"| {number(t['p50'], 1)} / {number(t['max'], 1)} |"
        )
    return lines


def _blind_rate(row: dict[str, Any]) -> str:
    """Blind copies a second of the busiest server against what its budget allows."""
    if "blind_copies_per_second_max" not in row:  # results from before the field
        return "-"
    return (
        f"{number(row['blind_copies_per_second_max'], 1)} "
        f"(rate {row['blind_rate']}, with burst {number(row['blind_allowed_per_second'], 1)})"
    )


def _flood_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| sources | N | flood packets (rate/s) | underlay packets per flood packet "
        "| blind copies | blind copies/s, busiest server (allowed) "
        "| dropped over budget (all / per source) | host CPU s per 1,000 | sessions broken "
        "in a withdrawal under the flood |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sources = "many /24s" if r.get("sources") == "many" else "one address"
        lines.append(
            f"| {sources} | {r['members']} | {r['flood_sent']} ({r['rate']}) "
            f"| {number(r['underlay_per_flood_packet'], 3)} | {r['replicated']} "
            f"| {_blind_rate(r)} "
            f"| {r['blind_limited']} / {r['blind_source_limited']} "
            f"| {number(r['host_cpu_seconds_per_1000'], 4)} | {r['broken']} of {r['sessions']} |"
        )
    return lines


def _copies_table(results: Results) -> list[str]:
    lines = [
        "| N | copies per rescued packet (median over events) | without learning | "
        "feedback per rescued packet |",
        "|---|---|---|---|",
    ]
    by_n: dict[int, list[dict[str, Any]]] = {}
    for row in results.get("sessions", []):
        counters = row.get("rescue_counters")
        if counters and counters.get("copies_per_rescued") is not None:
            by_n.setdefault(row["servers"], []).append(counters)
    for n, rows in sorted(by_n.items()):
        copies = statistics.median(c["copies_per_rescued"] for c in rows)
        feedback = statistics.median(c["feedback_per_rescued"] for c in rows)
        lines.append(f"| {n} | {copies:.2f} | {n - 1} | {feedback:.2f} |")
    return lines


def section(results: Results) -> list[str]:
    """The markdown lines of the flow rescue section."""
    rescue = results.get("rescue")
    if not rescue:
        return []
    return [
        "## 5. Flow rescue",
        "",
        "docs/rescue.md explains the mechanism. Section 4 has the sessions each event "
        "breaks with rescue off and on (bench lab, real sidecars, rescue installed with "
        "`anycast-announcer rescue install` on every server). The measurements below run "
        "on the rescue test lab (tests/integration/rescue/rescue.clab.yml: three servers "
        "behind one ECMP router, underlay MTU 1500, so the overlay carries 1450 and the "
        "servers clamp the MSS they advertise to 1410).",
        "",
        "**Copies per rescued packet** (section 4's runs, all N servers' counters): "
        "a forwarder replicates a flow to every peer until the owner's feedback arrives, "
        "then sends it to the owner only. Feedback is one copy back per flow per second "
        "after a burst of 3; the lab's sessions send about 3 packets a second, so it is "
        "large here and negligible for bulk flows.",
        "",
        *_copies_table(results),
        "",
        "**PMTUD**: the client-side router's link to the client drops to 1400 bytes; its "
        "ICMP errors are hashed by their own header, so they reach one server per flow "
        "of ICMP, not the flow's owner.",
        "",
        *_pmtud_table(rescue["pmtud"]),
        "",
        "**Throughput and CPU**: iperf3 between the client and s3. *direct*: the router "
        "sends the flow to s3; *rescued*: it starts on s3, then the router sends it to s1, "
        "which hands every packet to s3 over the overlay (upload: the data is rescued; "
        "download: only the ACKs are). *direct, rescue installed* against *direct, no "
        "rescue* is what every packet of a server pays for the ownership check "
        "(conntrack plus a few rules). CPU is the whole host's busy time per GB moved "
        "(the namespaces share one kernel, and other jobs on this host count too). On this "
        "one host the rescued path also costs CPU that real networks spend elsewhere: its "
        "packets cross the forwarder's stack and the router twice more, on the same two "
        "cores, so at full speed the rescued flow is CPU-bound earlier; paced at 2 Gbit/s, "
        "below that bound, it keeps its rate. (The CPU per GB of the paced runs is mostly "
        "the rest of the host's work spread over fewer bytes: compare the full-speed rows.)",
        "",
        *_throughput_table(rescue["throughput"]),
        "",
        "**Orphans**: a server dies (link down, route gone) while the client holds "
        "sessions on it. Without rescue the next server resets them at their next packet; "
        "with rescue they are replicated for `probation` (3 s) first, and when they had "
        "been rescued and learnt before, the learnt owner must time out first "
        "(`learn_timeout`, 5 s).",
        "",
        *_orphans_table(rescue["orphans"]),
        "",
        "**Flood**: random-tuple bare ACKs (no SYN) from the client to the anycast "
        "address at a bounded rate, the group configured with N members: s1..s3 and "
        "N - 3 addresses with no host (nobody owns a flood packet, so a real member would "
        "not answer either). Every VXLAN packet the servers send counts, each replica of "
        "a blind copy too. From one client address the per-source budget binds first; "
        "from random addresses in 100.64.0.0/10 (16,384 client /24s) only the aggregate "
        "budget can, and the blind copies per second of the busiest server (underlay "
        "packets: each blind packet costs N - 1) are shown against what its budget "
        "allows over the flood (`blind_copy_rate`, plus `blind_copy_burst` spread over "
        "the flood's seconds). Then the same flood while the client holds long-lived "
        "sessions and s3 is withdrawn.",
        "",
        *_flood_table(rescue.get("flood", [])),
        "",
    ]


# -- the Costs section of docs/rescue.md ---------------------------------------------------

COSTS_BEGIN = "<!-- costs: generated from docs/benchmarks/*.json by tests.benchmarks.run -->"
COSTS_END = "<!-- costs: end -->"


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _cost_sessions(results: Results) -> str:
    rows = results.get("sessions", [])
    off = [r for r in rows if not r.get("rescue")]
    on = [r for r in rows if r.get("rescue")]
    innocent_on = max((_innocent_broken(r) for r in on), default=0)
    own_on = max(
        (r["broken_on_affected"] for r in on if r["event"] in ("withdrawal", "drain")), default=0
    )
    sizes = ", ".join(str(n) for n in sorted({r["servers"] for r in rows}))
    sessions = sorted({r["sessions"] for r in rows})
    innocent = "no session" if innocent_on == 0 else f"at most {innocent_on} sessions"
    own = "none" if own_on == 0 else f"at most {own_on}"
    return (
        f"- **Sessions**: with rescue on, {innocent} on a server that did nothing wrong "
        f"broke in any event (failure, withdrawal, hook-less drain, weight change, "
        f"addition; N = {sizes}; {'/'.join(map(str, sessions))} sessions each), and a "
        f"withdrawn or drained server lost {own} of its own. Without rescue the same "
        f"events broke {min(r['broken'] for r in off)} to {max(r['broken'] for r in off)} "
        f"of the {'/'.join(map(str, sessions))}."
    )


def _cost_copies(results: Results) -> str:
    by_n: dict[int, list[dict[str, Any]]] = {}
    for row in results.get("sessions", []):
        counters = row.get("rescue_counters")
        if counters and counters.get("copies_per_rescued") is not None:
            by_n.setdefault(row["servers"], []).append(counters)
    copies = ", ".join(
        f"{statistics.median(c['copies_per_rescued'] for c in rows):.2f} (N = {n})"
        for n, rows in sorted(by_n.items())
    )
    feedback = statistics.median(c["feedback_per_rescued"] for rows in by_n.values() for c in rows)
    return (
        f"- **Copies per rescued packet**: {copies}, against N - 1 without learning: a "
        "flow is replicated to every peer until its owner's feedback arrives (a packet or "
        "two), then goes to the owner only. Feedback adds one packet per flow per second "
        f"after a burst of 3: {feedback:.2f} per rescued packet for the benchmark's "
        "sessions (about 3 packets a second each), nothing to speak of for bulk flows."
    )


def _cost_throughput(rows: list[dict[str, Any]]) -> str:
    ratios = _bulk_ratios(rows)
    by = {(r["direction"], r.get("rate", "max"), r["path"], r["rescue"]): r for r in rows}
    rescued, direct = by[("upload", "max", "rescued", True)], by[("upload", "max", "direct", True)]
    paced = next((k for k in ratios if k.startswith("upload at")), None)
    paced_text = f"; {paced} {_percent(ratios[paced])}" if paced else ""
    return (
        "- **Throughput** of one iperf3 flow, rescued against direct (both with rescue "
        f"installed): download (only ACKs rescued) {_percent(ratios['download'])}"
        f"{paced_text}; upload at full speed {_percent(ratios['upload'])}. Whole-host CPU "
        f"per GB moved was {rescued['cpu_seconds_per_gb']:.2f} s rescued against "
        f"{direct['cpu_seconds_per_gb']:.2f} s direct (upload, full speed, whole runs). "
        "Why the upload loses more, with the host's load and a profile per case: "
        "*Rescued bulk throughput*, next."
    )


def _cost_ownership(rows: list[dict[str, Any]]) -> str:
    by = {(r["direction"], r.get("rate", "max"), r["path"], r["rescue"]): r for r in rows}
    pairs = [
        (by[(d, "max", "direct", True)], by[(d, "max", "direct", False)])
        for d in ("upload", "download")
    ]
    losses = [1 - on[k] / off[k] for on, off in pairs for k in ("gbit_per_s", "best_gbit_per_s")]
    (up_on, up_off), (down_on, down_off) = pairs
    return (
        "- **Ownership check**: conntrack plus a few rules for every packet of an anycast "
        "address (and conntrack for the rest of the namespace's traffic of that family). "
        f"Direct throughput with rescue installed was {_percent(min(losses))} to "
        f"{_percent(max(losses))} below the runs without (medians "
        f"{up_on['gbit_per_s']:.1f} against {up_off['gbit_per_s']:.1f} Gbit/s upload and "
        f"{down_on['gbit_per_s']:.1f} against {down_off['gbit_per_s']:.1f} download, best "
        f"runs {up_on['best_gbit_per_s']:.1f} and {down_on['best_gbit_per_s']:.1f} against "
        f"{up_off['best_gbit_per_s']:.1f} and {down_off['best_gbit_per_s']:.1f}; CPU per GB "
        f"{up_on['cpu_seconds_per_gb']:.2f} against {up_off['cpu_seconds_per_gb']:.2f} and "
        f"{down_on['cpu_seconds_per_gb']:.2f} against {down_off['cpu_seconds_per_gb']:.2f}); "
        "part of it is the clamped MSS (1410 instead of 1460 bytes in this lab, 3.5% more "
        "packets per byte), the rest is conntrack and the rules."
    )


def _cost_pmtud(rows: list[dict[str, Any]]) -> str:
    def done(rescue: bool) -> tuple[int, int]:
        picked = [r for r in rows if bool(r["rescue"]) == rescue]
        return sum(sum(r["completed"].values()) for r in picked), sum(r["count"] for r in picked)

    (on_done, on_all), (off_done, off_all) = done(True), done(False)
    families = " and ".join(f"IPv{f}" for f in sorted({r["family"] for r in rows}))
    return (
        "- **PMTUD**: with a 1400-byte link on the client's side, "
        f"{on_done} of {on_all} large downloads completed with rescue ({families}), "
        f"{off_done} of {off_all} without (only the server the ICMP errors reached)."
    )


def _cost_orphans(rows: list[dict[str, Any]]) -> str:
    by = {r["case"]: r for r in rows}
    off, on, learnt = by["rescue off"], by["rescue on"], by["rescue on, learnt first"]

    def p50(row: dict[str, Any]) -> str:
        return f"{row['seconds_to_reset']['p50']:.1f} s"

    elsewhere = "none" if on["broken_elsewhere"] == 0 else str(on["broken_elsewhere"])
    return (
        "- **Orphans**: time until the client sees the reset of a dead server's session "
        f"(median): {p50(off)} without rescue, {p50(on)} with (probation), {p50(learnt)} "
        "when the flow had been rescued and learnt before the server died "
        "(`learn_timeout`, then probation, then TCP's retransmission backoff); and without "
        f"rescue the same death broke {off['broken_elsewhere']} sessions on the healthy "
        f"servers, with rescue {elsewhere}."
    )


def rescue_costs(results: Results) -> list[str]:
    """The measured bullets of docs/rescue.md's Costs section, between their markers."""
    rescue = results["rescue"]
    return [
        COSTS_BEGIN,
        _cost_sessions(results),
        _cost_copies(results),
        _cost_throughput(rescue["throughput"]),
        _cost_ownership(rescue["throughput"]),
        _cost_pmtud(rescue["pmtud"]),
        _cost_orphans(rescue["orphans"]),
        COSTS_END,
    ]


def with_rescue_costs(page: str, results: Results) -> str:
    """docs/rescue.md's text with the block between the markers generated again."""
    head, begin, rest = page.partition(COSTS_BEGIN)
    _, end, tail = rest.partition(COSTS_END)
    if not begin or not end:
        raise ValueError("docs/rescue.md lacks the costs markers")
    return head + "\n".join(rescue_costs(results)) + tail
