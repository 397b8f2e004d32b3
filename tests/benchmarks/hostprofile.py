"""Where a benchmark's CPU goes on this host: busy time from /proc/stat and ``perf record
-a`` profiles grouped by kernel symbol.

Every lab node is a network namespace of one kernel, so the whole machine's figures are
the lab's (plus whatever else the host runs). Shared by the price benchmark
(``tests.benchmarks.price``) and the rescued throughput one
(``tests.benchmarks.rescued_throughput``); each names its own symbol groups.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Groups = tuple[tuple[str, tuple[str, ...]], ...]
"""(group name, symbol prefixes), first match wins: put narrow groups before wide ones."""

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
CONNTRACK = (
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
)
"""Conntrack's symbols (its TCP window tracking too), for the groups of either benchmark."""
_LINE = re.compile(r"^\s*([\d.]+)%\s+(.*?)\s+\[([k.])\]\s+(\S+)")
"""A line of ``perf report --stdio``, sorted by ``comm,sym`` (or by ``sym`` alone)."""
OWN = ("iperf3",)
"""The benchmark's own programs: their user-space samples are 'user'."""
KERNEL_THREADS = ("swapper", "ksoftirqd/", "kworker/")
"""Where the kernel runs the lab's packets besides its programs (softirq in the idle task
or its thread, deferred work). Every other program's samples, kernel and user, are
'other programs': on a shared host, someone else's work (their netlink and nft calls
would otherwise count as our nftables)."""

USER_HZ = 100
"""/proc/stat's tick: 1/USER_HZ s (100 on every Linux architecture we run on)."""


# -- /proc/stat ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuTicks:
    """One /proc/stat reading: per line (the host first, then each CPU) the busy ticks
    (user, nice, system, irq, softirq), the idle ones (idle, iowait) and steal (time the
    hypervisor gave to someone else: neither ours nor idle)."""

    at: float
    busy: tuple[int, ...]
    idle: tuple[int, ...]
    steal: tuple[int, ...]


def cpu_ticks(stat: str | None = None) -> CpuTicks:
    """Read /proc/stat (or parse ``stat``)."""
    text = Path("/proc/stat").read_text() if stat is None else stat
    busy, idle, steal = [], [], []
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        fields = [int(v) for v in line.split()[1:9]]
        user, nice, system, idle_, iowait, irq, softirq, steal_ = fields
        busy.append(user + nice + system + irq + softirq)
        idle.append(idle_ + iowait)
        steal.append(steal_)
    return CpuTicks(time.monotonic(), tuple(busy), tuple(idle), tuple(steal))


def busy_jiffies() -> int:
    """Busy CPU time of the whole machine so far (user..softirq), in ticks."""
    return cpu_ticks().busy[0]


def busy_between(before: CpuTicks, after: CpuTicks) -> dict[str, Any]:
    """What the machine did between two readings: busy fraction of the host (of the time
    that was ours, busy or idle) and of each CPU, busy CPU seconds, and steal's share."""

    def fraction(index: int) -> float:
        busy = after.busy[index] - before.busy[index]
        idle = after.idle[index] - before.idle[index]
        return busy / (busy + idle) if busy + idle else 0.0

    busy_ticks = after.busy[0] - before.busy[0]
    all_ticks = busy_ticks + after.idle[0] - before.idle[0] + after.steal[0] - before.steal[0]
    return {
        "wall_seconds": round(after.at - before.at, 3),
        "busy_cpu_seconds": busy_ticks / USER_HZ,
        "host_busy": round(fraction(0), 4),
        "cpu_busy": [round(fraction(i), 4) for i in range(1, len(after.busy))],
        "steal": round((after.steal[0] - before.steal[0]) / all_ticks, 4) if all_ticks else 0.0,
    }


# -- perf ---------------------------------------------------------------------------------


def start_record(data: Path, seconds: float) -> subprocess.Popen[bytes]:
    """``perf record -a`` (every CPU, kernel and user symbols) for ``seconds`` into
    ``data``; wait on the process, then read it with :func:`read_report`."""
    return subprocess.Popen(
        ["perf", "record", "-a", "-F", "499", "-o", str(data), "--", "sleep", f"{seconds:.1f}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def read_report(data: Path) -> str:
    """Samples per program and symbol (own time, no call chains) of a
    :func:`start_record` file."""
    return subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "comm,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def group_of(symbol: str, groups: Groups) -> str:
    """The group a kernel symbol belongs to ('other' if none)."""
    for name, prefixes in groups:
        if symbol.startswith(prefixes):
            return name
    return "other"


def shares(report: str, groups: Groups) -> dict[str, Any]:
    """Per group, per program and top symbols, the percent of busy samples (idle loops
    left out) in ``perf report --stdio --sort comm,sym`` (or ``--sort sym``). Samples
    of :data:`OWN` programs and :data:`KERNEL_THREADS` (or without a program column) go
    by ``groups`` (kernel) or are 'user'; any other program's are 'other programs', and
    the top symbols leave them out."""
    by_group: dict[str, float] = {}
    by_program: dict[str, float] = {}
    symbols: dict[str, float] = {}
    for line in report.splitlines():
        match = _LINE.match(line)
        if not match or match.group(4).startswith(IDLE):
            continue
        percent, program, kind, symbol = float(match[1]), match[2], match[3], match[4]
        by_program[program or "?"] = by_program.get(program or "?", 0.0) + percent
        if program and program not in OWN and not program.startswith(KERNEL_THREADS):
            by_group["other programs"] = by_group.get("other programs", 0.0) + percent
            continue
        group = group_of(symbol, groups) if kind == "k" else "user"
        by_group[group] = by_group.get(group, 0.0) + percent
        symbols[symbol] = symbols.get(symbol, 0.0) + percent
    busy = sum(by_group.values()) or 1.0
    top = sorted(symbols.items(), key=lambda item: -item[1])[:25]
    programs = sorted(by_program.items(), key=lambda item: -item[1])[:10]
    return {
        "busy_percent": round(busy, 2),
        "groups": {k: round(100 * v / busy, 2) for k, v in by_group.items()},
        "programs": {k: round(100 * v / busy, 2) for k, v in programs},
        "top": [(s, round(100 * p / busy, 2)) for s, p in top],
    }


def share_table(
    heading: str, names: Sequence[str], cases: Sequence[str], profiles: dict[str, Any], key: str
) -> list[str]:
    """Markdown: a row per name, a column per case, ``profiles[case][key][name]`` (%)."""
    lines = [f"| {heading} | " + " | ".join(cases) + " |", "|---|" + "---|" * len(cases)]
    for name in names:
        cells = [f"{profiles[c].get(key, {}).get(name, 0.0):.1f}" for c in cases]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
