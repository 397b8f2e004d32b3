"""Rescued bulk throughput against direct, upload and download, and where the rescued
path's extra CPU goes.

Runs on the rescue test lab (``tests.benchmarks.rescue``: client -- q -- r -- s1, s2, s3),
rescue installed everywhere with the lab's config (flow directory on, the default). One
iperf3 flow from the client to the anycast address, unpaced, served by s3, in four cases
**interleaved** run by run (so drifting host load hits them alike):

- *upload direct* / *download direct* (``-R``): r routes the flow to s3;
- *upload rescued* / *download rescued*: the flow starts on s3, then r routes it to s1,
  which hands every packet to s3 over VXLAN (upload: the data; download: only the ACKs;
  the data goes back straight).

Per run, over the whole seconds after the switch (without the first one's slow start):
iperf3's median rate, the whole host's busy fraction and each CPU's (/proc/stat: is the
machine saturated?), and busy CPU seconds per GB moved. Then one run per case under
``perf record -a`` over the same window, its kernel symbols grouped by the work they do
(VXLAN and UDP, veth/IP/forwarding, conntrack, nftables, TCP, copy and checksum, skb
memory, softirq/locks/scheduling), each group's share turned into CPU seconds per GB,
so rescued minus direct says which work the rescued path adds.

Then the upload again, direct and rescued, **pinned**: the sending iperf3 on CPU 0, the
receiving one on CPU 1 (interleaved with the rest). On one host a flow's forwarding runs
in the softirq of the CPU that sent it (veth hands each packet to that CPU's backlog):
the client's TCP, r, s1's rules and VXLAN encapsulation, r again and s3's decapsulation
and TCP receive all run on the sender's CPU, one packet after another. Pinned, CPU 0's
busy fraction and its busy seconds per GB say whether that one core is the limit: then
the throughput ratio is the inverse ratio of its work per GB.

    sudo .venv/bin/python -m tests.benchmarks.rescued_throughput [--runs 5] [--seconds 10]

Writes docs/benchmarks/rescued.{json,md} and the conclusion in docs/rescue.md (between
the ``rescued:`` markers). Needs ``perf`` (Debian's linux-perf) and a quiet host: the
CPU figures are the whole machine's.
"""

from __future__ import annotations

import os
import shutil
import statistics
from pathlib import Path
from typing import Any

from tests.benchmarks import hostprofile
from tests.benchmarks.common import machine
from tests.benchmarks.hostprofile import CONNTRACK, Groups
from tests.benchmarks.published import between_markers, command_line, publish, stored_or_run
from tests.benchmarks.rescue import iperf_run
from tests.integration.rescue.rescuelab import SERVERS, RescueLab, rescue_lab

DIRECTIONS = ("upload", "download")
PATHS = ("direct", "rescued")
CASES = tuple(f"{d} {p}" for d in DIRECTIONS for p in PATHS)
PINNED = ("upload direct pinned", "upload rescued pinned")
"""Sender on CPU 0, receiver on CPU 1 (``iperf_run(pin=True)``)."""
ALL_CASES = CASES + PINNED
SWITCH_AFTER = 2.0
"""Seconds into a rescued run when r moves the flow to s1."""
SATURATED = 0.9
"""Host busy fraction from which the benchmark calls the machine saturated."""
CORE_SATURATED = 0.85
"""CPU 0's busy fraction from which a pinned run's sending core counts as the limit
(a sender that fills its core still idles between a full socket buffer and the ACKs)."""

GROUPS: Groups = (
    (
        "VXLAN and UDP",
        ("vxlan", "udp", "__udp", "iptunnel", "__iptunnel", "ip_tunnel", "gro_cells", "skb_tunnel"),
    ),
    ("conntrack", CONNTRACK),
    ("nftables", ("nft_", "__nft", "nf_tables", "nf_hook", "nf_")),
    (
        "veth, IP and forwarding",
        (
            "veth",
            "ip_",
            "__ip_",
            "ip4_",
            "ipv4_",
            "inet_gro",
            "fib",
            "__fib",
            "dev_",
            "__dev_",
            "netif_",
            "__netif_",
            "neigh_",
            "__neigh",
            "eth_",
            "dst_",
            "skb_dst",
            "rt_",
            "__mkroute",
            "raw_local_deliver",
            "validate_xmit",
            "sch_direct",
            "__qdisc",
            "qdisc",
            "pfifo",
            "enqueue_to_backlog",
            "get_rps_cpu",
            "napi_gro",
            "dev_gro",
            "skb_gro",
            "__skb_gro",
        ),
    ),
    (
        "TCP",
        (
            "tcp",
            "__tcp",
            "inet_",
            "__inet",
            "sk_",
            "__sk_",
            "sock_",
            "release_sock",
            "lock_sock",
            "bictcp",
            "cubictcp",
            "minmax",
        ),
    ),
    (
        "copy and checksum",
        (
            "copy_",
            "_copy_",
            "__copy_",
            "memcpy",
            "__memcpy",
            "memmove",
            "__memmove",
            "rep_movs",
            "csum",
            "__csum",
            "do_csum",
            "skb_copy",
            "simple_copy",
        ),
    ),
    (
        "skb and memory",
        (
            "kmem_cache",
            "__kmem_cache",
            "kmalloc",
            "__kmalloc",
            "kfree",
            "__kfree",
            "__alloc_skb",
            "alloc_skb",
            "__napi_alloc_skb",
            "skb_release",
            "skb_free",
            "consume_skb",
            "napi_consume",
            "__build_skb",
            "build_skb",
            "skb_clone",
            "__skb_clone",
            "pskb_expand_head",
            "skb_attempt_defer",
            "page_",
            "__page",
            "get_page_from_freelist",
            "free_unref",
            "__free_pages",
            "__alloc_pages",
            "alloc_pages",
            "___slab",
            "__slab",
            "slab",
        ),
    ),
    (
        "softirq, locks, scheduling",
        (
            "__do_softirq",
            "do_softirq",
            "handle_softirqs",
            "net_rx_action",
            "__napi_poll",
            "napi_",
            "process_backlog",
            "__local_bh_enable",
            "irq_exit",
            "__irq_exit",
            "_raw_spin",
            "raw_spin",
            "native_queued_spin",
            "queued_spin",
            "schedule",
            "__schedule",
            "finish_task_switch",
            "try_to_wake_up",
            "ttwu",
            "enqueue_task",
            "dequeue_task",
            "pick_next",
        ),
    ),
)
"""First match wins: conntrack's ``tcp_in_window`` before TCP, ``inet_gro*`` (IP's GRO)
before TCP's ``inet_*``. Own time per symbol: the cost of a hop shows in the generic
functions every hop runs (IP receive, routing, veth transmit), hence one group for them.
Sampling by timer on a VM piles some samples up where interrupts come back on
(``_raw_spin_unlock_irqrestore``, ``__local_bh_enable_ip``): hence 'locks' with softirq."""
NAMES = (*(name for name, _ in GROUPS), "other", "user", "other programs")
"""Kernel groups, the rest of the kernel, iperf3's user space, any other program's work
(kernel and user: ``hostprofile.KERNEL_THREADS``)."""


def _case(lab: RescueLab, case: str, seconds: float, profile: Path | None) -> dict[str, Any]:
    direction, path, *pinned = case.split()
    lab.set_paths(["s3"])
    result = iperf_run(
        lab,
        seconds,
        reverse=direction == "download",
        switch_after=SWITCH_AFTER if path == "rescued" else None,
        profile=profile,
        pin=bool(pinned),
    )
    # A rescued run whose packets were never rescued would measure the direct path.
    if path == "rescued" and not result["rescued_packets"]:
        raise RuntimeError(f"{case}: no packet was rescued (did r move the flow to s1?)")
    return {"case": case, **result}


def _profile(lab: RescueLab, case: str, seconds: float, workdir: Path) -> dict[str, Any]:
    data = workdir / f"perf-{case.replace(' ', '-')}.data"
    result = _case(lab, case, seconds, data)
    found = hostprofile.shares(hostprofile.read_report(data), GROUPS)
    per_gb = result["window"]["cpu_seconds_per_gb"]
    return {
        "gbit_per_s": result["gbit_per_s"],
        "host_busy": result["window"]["host_busy"],
        "cpu_seconds_per_gb": per_gb,
        "groups_cpu_seconds_per_gb": {
            name: round(per_gb * share / 100, 4) for name, share in found["groups"].items()
        },
        **found,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per case: median, slowest and fastest rate, median host and busiest-CPU busy
    fraction, and median CPU seconds per GB (the measured window's)."""
    out = {}
    for case in ALL_CASES:
        picked = [r for r in rows if r["case"] == case]
        if not picked:  # results stored before the pinned cases existed
            continue
        rates = [r["gbit_per_s"] for r in picked]
        windows = [r["window"] for r in picked]
        out[case] = {
            "runs": len(picked),
            "gbit_per_s": statistics.median(rates),
            "min_gbit_per_s": min(rates),
            "max_gbit_per_s": max(rates),
            "host_busy": statistics.median(w["host_busy"] for w in windows),
            "busiest_cpu": statistics.median(max(w["cpu_busy"]) for w in windows),
            "cpu_seconds_per_gb": statistics.median(w["cpu_seconds_per_gb"] for w in windows),
            "retransmits": statistics.median(r.get("retransmits") or 0 for r in picked),
        }
        if case in PINNED:
            out[case]["sender_cpu"] = statistics.median(w["sender_cpu_busy"] for w in windows)
            out[case]["sender_cpu_seconds_per_gb"] = statistics.median(
                w["sender_cpu_seconds_per_gb"] for w in windows
            )
    return out


def compare(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per direction: rescued/direct throughput, and direct/rescued CPU per GB (what the
    throughput ratio would be if the CPU were the only limit), and whether both cases
    saturated the host."""
    out = {}
    for direction in DIRECTIONS:
        direct, rescued = summary[f"{direction} direct"], summary[f"{direction} rescued"]
        out[direction] = {
            "throughput_ratio": rescued["gbit_per_s"] / direct["gbit_per_s"],
            "inverse_cpu_ratio": direct["cpu_seconds_per_gb"] / rescued["cpu_seconds_per_gb"],
            "saturated": min(direct["host_busy"], rescued["host_busy"]) >= SATURATED,
        }
    if all(case in summary for case in PINNED):
        direct, rescued = (summary[case] for case in PINNED)
        out["upload pinned"] = {
            "throughput_ratio": rescued["gbit_per_s"] / direct["gbit_per_s"],
            "inverse_cpu_ratio": (
                direct["sender_cpu_seconds_per_gb"] / rescued["sender_cpu_seconds_per_gb"]
            ),
            "saturated": min(direct["sender_cpu"], rescued["sender_cpu"]) >= CORE_SATURATED,
        }
    return out


def run(workdir: Path, runs: int, seconds: float) -> dict[str, Any]:
    """Interleaved runs of the four cases, then one profiled run per case."""
    workdir.chmod(0o755)
    with rescue_lab(workdir) as lab:
        lab.reset()  # rescue installed on every server, the lab's config
        rows = [
            {"run": index, **_case(lab, case, seconds, None)}
            for index in range(runs)
            for case in ALL_CASES
        ]
        profiles = {case: _profile(lab, case, seconds, workdir) for case in CASES}
        lab.set_paths(SERVERS)
    summary = summarize(rows)
    return {
        "machine": machine(),
        "seconds": seconds,
        "switch_after": SWITCH_AFTER,
        "runs": rows,
        "summary": summary,
        "compare": compare(summary),
        "profiles": profiles,
    }


# -- rendering ------------------------------------------------------------------------------


def _lab_seconds(per_group: dict[str, float]) -> float:
    """The sum of the groups but other programs' (on a shared host: not the lab's work)."""
    return sum(v for k, v in per_group.items() if k != "other programs")


def _extra(results: dict[str, Any], direction: str) -> dict[str, float]:
    """CPU seconds per GB the rescued path adds per group (profiled runs)."""
    direct = results["profiles"][f"{direction} direct"]["groups_cpu_seconds_per_gb"]
    rescued = results["profiles"][f"{direction} rescued"]["groups_cpu_seconds_per_gb"]
    return {name: rescued.get(name, 0.0) - direct.get(name, 0.0) for name in NAMES}


def _or_unknown(value: float | None) -> str:
    # Results stored before a figure was recorded say so, rather than show a zero.
    return "n/a" if value is None else f"{value:g}"


def render(results: dict[str, Any]) -> str:
    """The benchmark as Markdown: rates and CPU, the ratios, the profile by group."""
    summary, compared = results["summary"], results["compare"]
    lines = [
        "## Rescued bulk throughput against direct",
        "",
        "Generated by `python -m tests.benchmarks.rescued_throughput` from `rescued.json`: "
        "one unpaced iperf3 flow between the client and s3 on the rescue lab, rescue "
        f"installed (flow directory on); *rescued*: r moves the flow to s1 after "
        f"{results['switch_after']:g} s. Cases interleaved run by run, {results['seconds']:g} s "
        "runs; rates and CPU over the whole seconds after the switch (or the first). Host "
        f"{results['machine']['cpu']}, {results['machine']['cores']} cores; CPU is the whole "
        "host's busy time (/proc/stat), other work on it included.",
        "",
        "| case | runs | median Gbit/s | slowest - fastest | host busy | busiest CPU "
        "| CPU s per GB | retransmits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in (c for c in ALL_CASES if c in summary):
        row = summary[case]
        lines.append(
            f"| {case} | {row['runs']} | {row['gbit_per_s']:.2f} "
            f"| {row['min_gbit_per_s']:.2f} - {row['max_gbit_per_s']:.2f} "
            f"| {100 * row['host_busy']:.0f}% | {100 * row['busiest_cpu']:.0f}% "
            f"| {row['cpu_seconds_per_gb']:.3f} | {_or_unknown(row.get('retransmits'))} |"
        )
    lines += [
        "",
        "| direction | rescued / direct throughput | direct / rescued CPU per GB "
        "| host saturated in both |",
        "|---|---|---|---|",
    ]
    for direction in DIRECTIONS:
        c = compared[direction]
        lines.append(
            f"| {direction} | {100 * c['throughput_ratio']:.0f}% "
            f"| {100 * c['inverse_cpu_ratio']:.0f}% | {'yes' if c['saturated'] else 'no'} |"
        )
    lines += _pinned_table(results)
    lines += [
        "",
        "Busy fractions, CPU per GB and retransmits (the sender's, whole run) are medians "
        "over the runs. When the host is saturated in both cases, the throughput ratio "
        "should be close to the inverse ratio of CPU per GB: the rescued flow is as fast "
        "as its CPU cost allows. When it is not, something else holds the flow back "
        "(retransmits say whether packets were lost).",
        "",
        "CPU seconds per GB by kind of work, one `perf record -a` run per case (each "
        "group's share of the busy samples times that run's CPU per GB; own time per "
        "kernel symbol; 'user' is iperf3's user space, 'other programs' all the samples "
        "of programs other than iperf3 and the kernel's threads):",
        "",
        "| group | " + " | ".join(CASES) + " | upload: rescued adds | download: rescued adds |",
        "|---|" + "---|" * (len(CASES) + 2),
    ]
    extra = {d: _extra(results, d) for d in DIRECTIONS}
    for name in NAMES:
        cells = [
            f"{results['profiles'][c]['groups_cpu_seconds_per_gb'].get(name, 0.0):.3f}"
            for c in CASES
        ]
        adds = [f"{extra[d][name]:+.3f}" for d in DIRECTIONS]
        lines.append(f"| {name} | " + " | ".join(cells + adds) + " |")
    totals = [f"{results['profiles'][c]['cpu_seconds_per_gb']:.3f}" for c in CASES]
    adds = [f"{sum(extra[d].values()):+.3f}" for d in DIRECTIONS]
    lines.append("| **all** | " + " | ".join(totals + adds) + " |")
    lab = [
        f"{_lab_seconds(results['profiles'][c]['groups_cpu_seconds_per_gb']):.3f}" for c in CASES
    ]
    adds = [f"{_lab_seconds(extra[d]):+.3f}" for d in DIRECTIONS]
    lines.append("| **all but other programs** | " + " | ".join(lab + adds) + " |")
    lines += _programs_table(results)
    lines += [
        "",
        "Top symbols of the rescued upload, other programs left out (% of busy samples):",
        "",
    ]
    lines += [f"- `{s}` {p:.2f}" for s, p in results["profiles"]["upload rescued"]["top"][:15]]
    return "\n".join(lines) + "\n"


def _pinned_table(results: dict[str, Any]) -> list[str]:
    """The pinned upload: the sending core's busy fraction and work per GB."""
    pinned = results["compare"].get("upload pinned")
    if pinned is None:
        return []
    direct, rescued = (results["summary"][case] for case in PINNED)
    return [
        "",
        "Pinned upload (sender on CPU 0, receiver on CPU 1): CPU 0 carries the flow's "
        "whole path up to the receiving socket, one packet after another.",
        "",
        "| upload, pinned | rescued / direct throughput | direct / rescued CPU 0 s per GB "
        "| CPU 0 busy, direct | CPU 0 busy, rescued | CPU 0 s per GB, direct | rescued |",
        "|---|---|---|---|---|---|---|",
        f"| medians | {100 * pinned['throughput_ratio']:.0f}% "
        f"| {100 * pinned['inverse_cpu_ratio']:.0f}% | {100 * direct['sender_cpu']:.0f}% "
        f"| {100 * rescued['sender_cpu']:.0f}% | {direct['sender_cpu_seconds_per_gb']:.3f} "
        f"| {rescued['sender_cpu_seconds_per_gb']:.3f} |",
    ]


def _pinned_verdict(results: dict[str, Any]) -> str:
    pinned = results["compare"].get("upload pinned")
    if pinned is None:
        return ""
    direct, rescued = (results["summary"][case] for case in PINNED)
    figures = (
        f"rescued {100 * pinned['throughput_ratio']:.0f}% of direct "
        f"({rescued['gbit_per_s']:.2f} against {direct['gbit_per_s']:.2f} Gbit/s), the "
        f"sending core {100 * direct['sender_cpu']:.0f}% busy direct and "
        f"{100 * rescued['sender_cpu']:.0f}% rescued, "
        f"{rescued['sender_cpu_seconds_per_gb']:.2f} s of it per GB against "
        f"{direct['sender_cpu_seconds_per_gb']:.2f} s"
    )
    gap = abs(pinned["throughput_ratio"] / pinned["inverse_cpu_ratio"] - 1)
    if pinned["saturated"] and gap <= 0.1 and _other_share(results) < OTHERS_QUIET:
        return (
            f" **Pinned upload** (sender on CPU 0, receiver on CPU 1): {figures}. The "
            "sending core is full in both, and the throughput ratio matches the inverse "
            f"ratio of its work per GB ({100 * pinned['inverse_cpu_ratio']:.0f}%): **one "
            "core, the sender's, is the limit** in this lab. A flow's forwarding runs in "
            "the softirq of the CPU that sent it, so the client's TCP, r (twice), s1's "
            "rules and VXLAN encapsulation and s3's decapsulation all queue on that "
            "core; unpinned, the sender moves between the two CPUs and the host looks "
            "half idle. On real servers each hop has its own CPUs: what the rescued path "
            "adds there is s1's copy and encapsulation and s3's decapsulation, not a "
            "second trip through the client's core."
        )
    return (
        f" **Pinned upload** (sender on CPU 0, receiver on CPU 1): {figures}; the inverse "
        f"ratio of the sending core's work per GB is {100 * pinned['inverse_cpu_ratio']:.0f}%: "
        "the sending core was not shown to be the limit."
    )


def _programs_table(results: dict[str, Any]) -> list[str]:
    """Busy samples per program in the profiled runs: the lab's (iperf3, ksoftirqd,
    swapper in softirq) against other work on the host."""
    profiles = results["profiles"]
    programs = sorted(
        {name for c in CASES for name in profiles[c].get("programs", {})},
        key=lambda name: -max(profiles[c].get("programs", {}).get(name, 0.0) for c in CASES),
    )[:8]
    lines = [
        "",
        "Busy samples by program in the profiled runs (%; kernel work is counted in "
        "whichever program it interrupted, so the lab's softirq work shows partly under "
        "others; a large share of programs that are not the lab's means a busy host):",
        "",
        *hostprofile.share_table("program", programs, CASES, profiles, "programs"),
    ]
    return lines


OTHERS_QUIET = 5.0
"""Percent of a profiled run's busy samples in other programs under which the host counts
as quiet (the lab's own work decided its saturation)."""


def _other_share(results: dict[str, Any]) -> float:
    return max(float(results["profiles"][c]["groups"].get("other programs", 0.0)) for c in CASES)


def _others(results: dict[str, Any]) -> str:
    share = _other_share(results)
    if share < OTHERS_QUIET:
        return f" Other programs were at most {share:.1f}% of a profiled run's busy samples."
    return (
        f" Other programs ran meanwhile (up to {share:.0f}% of a profiled run's busy "
        "samples): the host was shared, so read the CPU figures as upper bounds and the "
        "ratios with care."
    )


BEGIN = (
    "<!-- rescued: generated from docs/benchmarks/rescued.json "
    "by tests.benchmarks.rescued_throughput -->"
)
END = "<!-- rescued: end -->"


def _verdict(results: dict[str, Any], direction: str) -> str:
    direct = results["summary"][f"{direction} direct"]
    rescued = results["summary"][f"{direction} rescued"]
    c = results["compare"][direction]
    busy = (
        f"host busy {100 * direct['host_busy']:.0f}% direct and "
        f"{100 * rescued['host_busy']:.0f}% rescued, busiest CPU "
        f"{100 * direct['busiest_cpu']:.0f}% and {100 * rescued['busiest_cpu']:.0f}%"
    )
    if not c["saturated"]:
        return f"the host was not saturated ({busy}), so its CPU was not the only limit"
    gap = abs(c["throughput_ratio"] / c["inverse_cpu_ratio"] - 1)
    agree = "matches" if gap <= 0.1 else "does not match"
    if _other_share(results) >= OTHERS_QUIET:
        limit = ", but other programs' work filled the cores too: not a verdict on the lab"
    else:
        limit = ": the two cores are the limit" if gap <= 0.1 else ""
    return (
        f"both cores were saturated ({busy}) and the throughput ratio {agree} the inverse "
        f"CPU ratio ({100 * c['inverse_cpu_ratio']:.0f}%){limit}"
    )


def conclusion(results: dict[str, Any]) -> str:
    """The paragraph docs/rescue.md carries between :data:`BEGIN` and :data:`END`."""
    runs = results["summary"][CASES[0]]["runs"]
    parts = []
    for direction in DIRECTIONS:
        direct = results["summary"][f"{direction} direct"]
        rescued = results["summary"][f"{direction} rescued"]
        c = results["compare"][direction]
        extra = _extra(results, direction)
        lab = {k: v for k, v in extra.items() if k != "other programs"}
        biggest = sorted(((v, k) for k, v in lab.items() if v > 0), reverse=True)[:4]
        where = ", ".join(f"{name} {value:+.2f}" for value, name in biggest)
        profiled = [results["profiles"][f"{direction} {p}"] for p in ("rescued", "direct")]
        parts.append(
            f"**{direction}** rescued {100 * c['throughput_ratio']:.0f}% of direct "
            f"({rescued['gbit_per_s']:.2f} against {direct['gbit_per_s']:.2f} Gbit/s), CPU "
            f"per GB {rescued['cpu_seconds_per_gb']:.2f} s against "
            f"{direct['cpu_seconds_per_gb']:.2f} s; {_verdict(results, direction)}. In the "
            f"profiled runs ({profiled[0]['cpu_seconds_per_gb']:.2f} s against "
            f"{profiled[1]['cpu_seconds_per_gb']:.2f} s per GB) the rescued path's extra "
            f"{_lab_seconds(lab):+.2f} s per GB (other programs left out) "
            f"went mostly to: {where}."
        )
    return (
        "- **Rescued bulk throughput** (`make bench-rescued`, "
        "[benchmarks/rescued.md](benchmarks/rescued.md): one unpaced iperf3 flow, "
        f"medians of {runs} interleaved runs per case, rescue installed in all): "
        + " ".join(parts)
        + _pinned_verdict(results)
        + _others(results)
        + " On one host the rescued upload's data crosses s1's stack, its VXLAN "
        "encapsulation, r a second time and s3's decapsulation, all on the same cores; "
        "on real servers the router hops run elsewhere."
    )


def with_conclusion(page: str, results: dict[str, Any]) -> str:
    """``page`` with the text between the markers replaced by :func:`conclusion`."""
    return between_markers(page, BEGIN, END, conclusion(results))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser, args = command_line(
        argv, description=__doc__.splitlines()[0], name="rescued", runs=5, seconds=10,
        min_seconds=6,
    )  # fmt: skip
    if not args.from_json and (os.cpu_count() or 1) < 2:
        parser.error("the pinned cases need two CPUs (sender on CPU 0, receiver on CPU 1)")
    if not args.from_json and shutil.which("perf") is None:
        parser.error("perf is not installed: apt-get install linux-perf")
    results = stored_or_run(args, "rescued", run)
    publish(
        results,
        report=args.docs / "benchmarks" / "rescued.md",
        render=render,
        page=args.docs / "rescue.md",
        markers=(BEGIN, END),
        paragraph=conclusion(results),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
