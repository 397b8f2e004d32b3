"""The rescued upload taken apart: how much of its loss is the lab's path, how much rescue.

``make bench-rescued`` finds the rescued upload at 55-58% of direct with neither CPU
full. This benchmark adds the rescued path's parts one at a time, on the same lab
(``tests.benchmarks.rescue``: client -- q -- r -- s1, s2, s3, and a spare host h on r),
rescue installed on every server, one unpaced iperf3 upload to s3 per run:

- *direct*: r routes the flow to s3;
- *hairpin*: r routes it to h, a plain host without rescue, which routes it back
  through r to s3 (r sends what comes from h to s3): two more veth hops and two more
  forwardings, nothing else;
- *vxlan*: h routes it into a plain kernel VXLAN device whose remote is s3 (a second
  VXLAN device on s3, its own VNI and port, not rescue's): the encapsulation, the outer
  packet's hops and s3's decapsulation;
- *vxlan + conntrack*: the same, with connection tracking on h (one ``ct state`` rule);
- *vxlan + conntrack + dup*: the same, but h forwards as rescue does, an nftables
  ``dup`` to s3's overlay address and a ``drop`` of the original, in prerouting;
- *rescued*: r routes it to s1, where rescue forwards it (all of rescue: its ownership
  check, its sets and counters, the flow directory, its dup and overlay).

Two contrasts, not steps: forwarding before the IP stack, with nftables' ``fwd`` in a
netdev ingress hook (no routing, conntrack, TTL or copy):

- *vxlan, netdev fwd*: h forwards the flow so into the plain VXLAN device;
- *rescued, netdev fwd*: r routes the flow to s1 as in *rescued*, where a static rule for
  this one flow, in a table of its own beside rescue's, forwards it so into rescue's
  overlay to s3: what a netdev fast path for learnt flows could keep (rescue has none).

Every case starts direct and moves at the same second (as ``make bench-rescued`` does),
the cases are interleaved run by run, and each case's median is set against direct's:
each step's loss is what that part costs on this host. h is checked to have carried the
flow in every case that routes through it.

    sudo .venv/bin/python -m tests.benchmarks.hairpin [--runs 9] [--seconds 8]

Writes docs/benchmarks/hairpin.{json,md} and the conclusion in docs/rescue.md (between
the ``hairpin:`` markers). Needs a quiet host: the figures are the whole machine's.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks.common import machine
from tests.benchmarks.published import between_markers, command_line, publish, stored_or_run
from tests.benchmarks.rescue import IPERF_PORT, iperf_run
from tests.integration.rescue.rescuelab import ANYCAST, SERVERS, RescueLab, rescue_lab

CASES = (
    "direct",
    "hairpin",
    "vxlan",
    "vxlan + conntrack",
    "vxlan + conntrack + dup",
    "rescued",
    "vxlan, netdev fwd",
    "rescued, netdev fwd",
)
LADDER = CASES[:6]
"""Each adds one part to the one before; the cases after them are contrasts, not steps."""
THROUGH_H = (*CASES[1:5], "vxlan, netdev fwd")
SWITCH_AFTER = 2.0
"""Seconds into a run when r moves the flow (as in ``make bench-rescued``)."""
CARRIED = 0.9
"""Share of the measured window's bytes h must have received for its case to count."""

# The lab's addresses this benchmark adds (h is the lab's spare host, 10.0.8.2 on r's e8).
H_UNDERLAY = "10.0.8.2"
S3_UNDERLAY = "10.0.3.2"
H_OVERLAY = "10.77.0.1"
S3_OVERLAY = "10.77.0.2"
VXLAN = ("vxh", "4242", "4799")
"""Device name, VNI and UDP port of the plain VXLAN pair: none of rescue's."""
R_TABLE = "100"
H_TABLE = "20"
CONNTRACK_TABLE = "hairpin_ct"
DUP_TABLE = "hairpin_dup"
FWD_TABLE = "hairpin_fwd"

CONNTRACK_RULES = f"""\
table inet {CONNTRACK_TABLE} {{
  chain pre {{
    type filter hook prerouting priority 0; policy accept;
    ct state established,related counter accept
  }}
}}
"""
DUP_RULES = f"""\
table ip {DUP_TABLE} {{
  chain pre {{
    type filter hook prerouting priority 10; policy accept;
    iifname "eth1" ip daddr {ANYCAST[4]} dup to {S3_OVERLAY} device "{VXLAN[0]}" drop
  }}
}}
"""
FWD_RULES = """\
table netdev {table} {{
  chain in {{
    type filter hook ingress device "eth1" priority -500; policy accept;
    ip daddr {anycast} tcp dport {port} fwd ip to {to} device "{device}"
  }}
}}
"""
"""Forwarding before the IP stack: no routing, conntrack, TTL or copy. On h, into the
plain VXLAN device; on s1, into rescue's overlay to s3's rescue address, for the
benchmark's one flow (a static rule beside rescue's tables: rescue has no such path)."""


def fwd_rules(to: str, device: str) -> str:
    """:data:`FWD_RULES` for the iperf3 flow, forwarded to ``to`` over ``device``."""
    return FWD_RULES.format(
        table=FWD_TABLE, anycast=ANYCAST[4], port=IPERF_PORT, to=to, device=device
    )


def _sysctl_off(lab: RescueLab, node: str, *devices: str) -> None:
    # The client's packets reach r from h and s3 from the overlay: not the way back.
    names = [f"net.ipv4.conf.{dev}.rp_filter=0" for dev in ("all", "default", *devices)]
    lab.run(node, "sysctl", "-qw", *names)


def _vxlan(lab: RescueLab, node: str, local: str, remote: str, address: str) -> str:
    name, vni, port = VXLAN
    lab.run(node, "ip", "link", "add", name, "type", "vxlan", "id", vni, "local", local,
            "remote", remote, "dstport", port)  # fmt: skip
    lab.run(node, "ip", "addr", "add", f"{address}/30", "dev", name)
    lab.run(node, "ip", "link", "set", name, "up")
    link = json.loads(lab.run(node, "ip", "-j", "link", "show", name).stdout)
    return str(link[0]["address"])


def prepare(lab: RescueLab) -> str:
    """h as a plain forwarding host and a plain VXLAN pair h -> s3 (nothing of rescue);
    returns s3's address on rescue's overlay."""
    lab.run("r", "ip", "route", "add", f"{ANYCAST[4]}/32", "via", S3_UNDERLAY, "table", R_TABLE)
    lab.run("r", "ip", "rule", "add", "iif", "e8", "lookup", R_TABLE, "pref", R_TABLE)
    _sysctl_off(lab, "r", "e8")
    # The lab gives h the anycast address (for install round trips): here it forwards.
    lab.run("h", "ip", "addr", "del", f"{ANYCAST[4]}/32", "dev", "lo", check=False)
    lab.run("h", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    lab.run("h", "ip", "route", "replace", "default", "via", "10.0.8.1")
    _vxlan(lab, "h", H_UNDERLAY, S3_UNDERLAY, H_OVERLAY)
    s3_mac = _vxlan(lab, "s3", S3_UNDERLAY, H_UNDERLAY, S3_OVERLAY)
    _sysctl_off(lab, "h", "eth1", VXLAN[0])
    _sysctl_off(lab, "s3", VXLAN[0])
    lab.run("h", "ip", "neigh", "replace", S3_OVERLAY, "lladdr", s3_mac, "dev", VXLAN[0],
            "nud", "permanent")  # fmt: skip
    lab.run("h", "ip", "route", "add", f"{ANYCAST[4]}/32", "via", S3_OVERLAY, "table", H_TABLE)
    rescue_overlay = json.loads(
        lab.run("s3", "ip", "-j", "-4", "addr", "show", "anycast-rsc").stdout
    )
    return str(rescue_overlay[0]["addr_info"][0]["local"])


def _nft(lab: RescueLab, node: str, rules: str) -> None:
    lab.lab.run(node, ["nft", "-f", "-"], input=rules)


def configure(lab: RescueLab, case: str, s3_rescue: str) -> None:
    """h's forwarding for ``case`` (routes, plain or into the VXLAN device, conntrack,
    dup, fwd) and s1's fwd rule. Everything a case does not use is removed, so the
    cases do not leak."""
    lab.run("h", "ip", "rule", "del", "pref", H_TABLE, check=False)
    for table in (f"inet {CONNTRACK_TABLE}", f"ip {DUP_TABLE}", f"netdev {FWD_TABLE}"):
        lab.run("h", "nft", "delete", "table", *table.split(), check=False)
    lab.run("s1", "nft", "delete", "table", "netdev", FWD_TABLE, check=False)
    if case == "rescued, netdev fwd":
        _nft(lab, "s1", fwd_rules(s3_rescue, "anycast-rsc"))
    elif case == "vxlan, netdev fwd":
        _nft(lab, "h", fwd_rules(S3_OVERLAY, VXLAN[0]))
    elif case.startswith("vxlan"):
        lab.run("h", "ip", "rule", "add", "iif", "eth1", "lookup", H_TABLE, "pref", H_TABLE)
    if "conntrack" in case:
        _nft(lab, "h", CONNTRACK_RULES)
    if "dup" in case:
        _nft(lab, "h", DUP_RULES)


def _h_received(lab: RescueLab) -> int:
    link = json.loads(lab.run("h", "ip", "-s", "-j", "link", "show", "eth1").stdout)
    return int(link[0]["stats64"]["rx"]["bytes"])


def _switch(lab: RescueLab, case: str) -> Callable[[], None]:
    if case.startswith("rescued"):
        return lambda: lab.set_paths(["s1"])

    def to_h() -> None:
        lab.run("r", "ip", "route", "replace", f"{ANYCAST[4]}/32", "via", H_UNDERLAY)

    return to_h


def _case(lab: RescueLab, case: str, seconds: float, s3_rescue: str) -> dict[str, Any]:
    lab.set_paths(["s3"])
    configure(lab, case, s3_rescue)
    before = _h_received(lab)
    switch = None if case == "direct" else _switch(lab, case)
    result = iperf_run(lab, seconds, False, SWITCH_AFTER if switch else None, switch=switch)
    through_h = _h_received(lab) - before
    window_bytes = result["window"]["gb"] * 1e9
    if case in THROUGH_H and through_h < CARRIED * window_bytes:
        raise RuntimeError(
            f"{case}: h received {through_h} bytes of the window's {window_bytes:.0f}"
            " (did r move the flow to h?)"
        )
    if case.startswith("rescued") and not result["rescued_packets"]:
        raise RuntimeError(f"{case}: no packet was rescued (did r move the flow to s1?)")
    return {
        "case": case,
        "gbit_per_s": result["gbit_per_s"],
        "host_busy": result["window"]["host_busy"],
        "cpu_busy": result["window"]["cpu_busy"],
        "cpu_seconds_per_gb": result["window"]["cpu_seconds_per_gb"],
        "retransmits": result["retransmits"],
        "h_received_bytes": through_h,
    }


def run(workdir: Path, runs: int, seconds: float) -> dict[str, Any]:
    """``runs`` rounds of every case, interleaved."""
    workdir.chmod(0o755)
    with rescue_lab(workdir) as lab:
        lab.reset()  # rescue installed on every server, the lab's config
        s3_rescue = prepare(lab)
        rows = [
            {"run": index, **_case(lab, case, seconds, s3_rescue)}
            for index in range(runs)
            for case in CASES
        ]
        configure(lab, "direct", s3_rescue)
        lab.set_paths(SERVERS)
    return {
        "machine": machine(),
        "seconds": seconds,
        "switch_after": SWITCH_AFTER,
        "runs": rows,
        "summary": summarize(rows),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per case: median, slowest and fastest rate, its share of direct's median, the
    step's loss against the case before it (ladder cases only), and the median host busy
    fraction and CPU seconds per GB."""
    out: dict[str, dict[str, Any]] = {}
    direct: float | None = None
    previous: float | None = None
    for case in CASES:
        picked = [r for r in rows if r["case"] == case]
        if not picked:
            raise ValueError(f"no run of case {case!r}")
        rates = [r["gbit_per_s"] for r in picked]
        median = statistics.median(rates)
        direct = median if direct is None else direct
        out[case] = {
            "runs": len(picked),
            "gbit_per_s": median,
            "min_gbit_per_s": min(rates),
            "max_gbit_per_s": max(rates),
            "of_direct": median / direct,
            "step": None
            if previous is None or case not in LADDER
            else (previous - median) / direct,
            "host_busy": statistics.median(r["host_busy"] for r in picked),
            "cpu_seconds_per_gb": statistics.median(r["cpu_seconds_per_gb"] for r in picked),
            "retransmits": statistics.median(r["retransmits"] or 0 for r in picked),
        }
        previous = median
    return out


# -- rendering ------------------------------------------------------------------------------

BEGIN = "<!-- hairpin: generated from docs/benchmarks/hairpin.json by tests.benchmarks.hairpin -->"
END = "<!-- hairpin: end -->"


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def render(results: dict[str, Any]) -> str:
    """docs/benchmarks/hairpin.md."""
    summary = results["summary"]
    runs = summary[CASES[0]]["runs"]
    lines = [
        "# The rescued upload taken apart",
        "",
        "Generated by `python -m tests.benchmarks.hairpin` from `hairpin.json`. One unpaced",
        f"iperf3 upload per run, {results['seconds']:g} s, the flow moved at"
        f" {results['switch_after']:g} s; {runs} interleaved runs per case. *Of direct*:",
        "the case's median against direct's; *step*: the points of direct this case",
        "loses against the one before it. Host busy: both CPUs, over the measured",
        "seconds. What each case adds: `tests/benchmarks/hairpin.py`.",
        "",
        f"Machine: {results['machine']['cpu']}, {results['machine']['cores']} cores,"
        f" kernel {results['machine']['kernel']}.",
        "",
        "| case | Gbit/s (median) | slowest - fastest | of direct | step | host busy"
        " | CPU s per GB | retransmits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        row = summary[case]
        # Signed change in points of direct: a loss is negative.
        step = "" if row["step"] is None else f"{-100 * row['step']:+.0f}"
        lines.append(
            f"| {case} | {row['gbit_per_s']:.2f} | {row['min_gbit_per_s']:.2f} -"
            f" {row['max_gbit_per_s']:.2f} | {_pct(row['of_direct'])} | {step}"
            f" | {_pct(row['host_busy'])} | {row['cpu_seconds_per_gb']:.2f}"
            f" | {row['retransmits']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _points(summary: dict[str, dict[str, Any]], better: str, worse: str) -> int:
    """Whole points of direct between two cases, as the text shows them."""
    difference: float = summary[better]["of_direct"] - summary[worse]["of_direct"]
    return round(100 * difference)


def _in_points(points: int) -> str:
    return f"{points} point" if points == 1 else f"{points} points"


def _rescue_cost(summary: dict[str, dict[str, Any]]) -> str:
    points = _points(summary, "vxlan + conntrack + dup", "rescued")
    if points <= 0:
        return (
            "rescue's own rules cost nothing measurable on top of it"
            f" (rescued {_pct(summary['rescued']['of_direct'])})"
        )
    return f"rescue's own rules cost {_in_points(points)} more"


def conclusion(results: dict[str, Any]) -> str:
    """The paragraph docs/rescue.md carries between :data:`BEGIN` and :data:`END`."""
    summary = results["summary"]
    ladder = ", ".join(f"{case} {_pct(summary[case]['of_direct'])}" for case in LADDER[1:])
    busiest = max(summary[case]["host_busy"] for case in CASES)
    return (
        "- **The rescued upload taken apart** (`make bench-hairpin`,"
        " [benchmarks/hairpin.md](benchmarks/hairpin.md): the same lab and flow, rescue"
        f" installed on the servers, medians of {summary['direct']['runs']} interleaved"
        " runs per case): the flow detours through h, a plain host on r, one part of the"
        f" rescued path added at a time. Of direct's {summary['direct']['gbit_per_s']:.2f}"
        f" Gbit/s: {ladder}. The detour's shape alone, with nothing of rescue (two more"
        " veth hops and forwardings, a kernel VXLAN encapsulation and decapsulation,"
        " conntrack, and a `dup` and `drop` as rescue forwards), keeps"
        f" {_pct(summary['vxlan + conntrack + dup']['of_direct'])};"
        f" {_rescue_cost(summary)}."
        " The costliest parts are the VXLAN encapsulation"
        f" ({_in_points(_points(summary, 'hairpin', 'vxlan'))}) and the `dup`"
        f" ({_in_points(_points(summary, 'vxlan + conntrack', 'vxlan + conntrack + dup'))})."
        " Every"
        f" part costs throughput while the host stays at most {_pct(busiest)} busy: on one"
        " host each stage of a packet's path runs in turn in the softirq of the CPU that"
        " sent it, so each part lengthens one serial chain; on real servers s1's stages run"
        " on s1. Forwarding before the IP stack instead, with nftables' `fwd` in a netdev"
        " ingress hook (no routing, conntrack or copy), keeps"
        f" {_pct(summary['vxlan, netdev fwd']['of_direct'])} through h and"
        f" {_pct(summary['rescued, netdev fwd']['of_direct'])} on s1 (a static rule for the"
        " benchmark's one flow beside rescue's tables: what a netdev fast path for learnt"
        " flows could keep; rescue has none)."
    )


def with_conclusion(page: str, results: dict[str, Any]) -> str:
    """``page`` with the text between the markers replaced by :func:`conclusion`."""
    return between_markers(page, BEGIN, END, conclusion(results))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    # The host's speed drifts from run to run: 9 runs per case steady the medians.
    _, args = command_line(
        argv, description=__doc__.splitlines()[0], name="hairpin", runs=9, seconds=8,
        min_seconds=5,
    )  # fmt: skip
    results = stored_or_run(args, "hairpin", run)
    publish(
        results,
        report=args.docs / "benchmarks" / "hairpin.md",
        render=render,
        page=args.docs / "rescue.md",
        markers=(BEGIN, END),
        paragraph=conclusion(results),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
