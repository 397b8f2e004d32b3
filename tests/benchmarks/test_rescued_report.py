"""The rescued throughput benchmark's pure parts: /proc/stat, symbol groups, the summary,
the ratios, the rendering and the conclusion docs/rescue.md carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.benchmarks.hostprofile import busy_between, cpu_ticks, group_of, shares
from tests.benchmarks.rescued_throughput import (
    BEGIN,
    CASES,
    END,
    GROUPS,
    compare,
    conclusion,
    render,
    summarize,
    with_conclusion,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"

STAT_BEFORE = """\
cpu  100 0 100 800 0 0 0 0 0 0
cpu0 50 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 400 0 0 0 0 0 0
intr 12345
"""
STAT_AFTER = """\
cpu  250 0 200 840 10 0 50 50 0 0
cpu0 150 0 90 400 0 0 40 20 0 0
cpu1 100 0 110 440 10 0 10 30 0 0
intr 12399
"""


def _run(case: str, gbit: float, busy: float, per_gb: float) -> dict[str, Any]:
    window = {"host_busy": busy, "cpu_busy": [busy, busy / 2], "cpu_seconds_per_gb": per_gb}
    if case.endswith("pinned"):  # CPU 0 carries two thirds of the work
        window |= {"sender_cpu_busy": busy, "sender_cpu_seconds_per_gb": per_gb * 2 / 3}
    return {
        "case": case,
        "gbit_per_s": gbit,
        "retransmits": 7 if "rescued" in case else 0,
        "window": window,
    }


def _profile(per_gb: float, groups: dict[str, float]) -> dict[str, Any]:
    return {
        "cpu_seconds_per_gb": per_gb,
        "groups": groups,
        "groups_cpu_seconds_per_gb": {k: per_gb * v / 100 for k, v in groups.items()},
        "programs": {"iperf3": 80.0, "ksoftirqd/0": 20.0},
        "top": [("vxlan_xmit_one", 12.0)],
    }


def results(rescued_busy: float = 0.98, pinned_busy: float = 0.95) -> dict[str, Any]:
    """Direct 10 Gbit/s at 1.0 s/GB; rescued upload 6 at 1.6, download 9 at 1.1; pinned
    upload direct 12 at 0.9 (CPU 0: 0.6), rescued 7.5 at 1.5 (CPU 0: 1.0)."""
    rows = []
    for gbit_shift in (-0.5, 0.0, 0.5):
        rows += [
            _run("upload direct", 10 + gbit_shift, 0.97, 1.0),
            _run("upload rescued", 6 + gbit_shift, rescued_busy, 1.6),
            _run("download direct", 10 + gbit_shift, 0.97, 1.0),
            _run("download rescued", 9 + gbit_shift, rescued_busy, 1.1),
            _run("upload direct pinned", 12 + gbit_shift, pinned_busy, 0.9),
            _run("upload rescued pinned", 7.5 + gbit_shift, pinned_busy, 1.5),
        ]
    direct = {"TCP": 50.0, "veth, IP and forwarding": 30.0, "user": 20.0}
    rescued = {"TCP": 31.25, "veth, IP and forwarding": 37.5, "VXLAN and UDP": 18.75}
    rescued["user"] = 12.5
    summary = summarize(rows)
    return {
        "machine": {"cpu": "test CPU", "cores": 2},
        "seconds": 10,
        "switch_after": 2.0,
        "runs": rows,
        "summary": summary,
        "compare": compare(summary),
        "profiles": {
            "upload direct": _profile(1.0, direct),
            "upload rescued": _profile(1.6, rescued),
            "download direct": _profile(1.0, direct),
            "download rescued": _profile(1.1, direct),
        },
    }


class TestHostCpu:
    def test_busy_fractions_of_host_and_each_cpu(self) -> None:
        """Busy is user..softirq; idle and iowait are idle; steal is neither."""
        window = busy_between(cpu_ticks(STAT_BEFORE), cpu_ticks(STAT_AFTER))
        assert window["busy_cpu_seconds"] == 3.0  # 300 ticks
        assert window["host_busy"] == round(300 / 350, 4)
        assert window["cpu_busy"] == [1.0, round(120 / 170, 4)]
        assert window["steal"] == round(50 / 400, 4)


class TestGroups:
    @pytest.mark.parametrize(
        ("symbol", "group"),
        [
            ("vxlan_xmit_one", "VXLAN and UDP"),
            ("udp_tunnel_xmit_skb", "VXLAN and UDP"),
            ("__udp4_lib_rcv", "VXLAN and UDP"),
            ("tcp_in_window", "conntrack"),
            ("nf_conntrack_in", "conntrack"),
            ("nft_do_chain", "nftables"),
            ("nf_hook_slow", "nftables"),
            ("veth_xmit", "veth, IP and forwarding"),
            ("ip_forward", "veth, IP and forwarding"),
            ("fib_table_lookup", "veth, IP and forwarding"),
            ("inet_gro_receive", "veth, IP and forwarding"),
            ("__netif_receive_skb_core", "veth, IP and forwarding"),
            ("tcp_v4_rcv", "TCP"),
            ("inet_recvmsg", "TCP"),
            ("_copy_from_iter", "copy and checksum"),
            ("csum_partial", "copy and checksum"),
            ("kmem_cache_alloc_node", "skb and memory"),
            ("__alloc_skb", "skb and memory"),
            ("__do_softirq", "softirq, locks, scheduling"),
            ("_raw_spin_unlock_irqrestore", "softirq, locks, scheduling"),
            ("entry_SYSCALL_64", "other"),
        ],
    )
    def test_kernel_symbols_fall_in_their_kind_of_work(self, symbol: str, group: str) -> None:
        assert group_of(symbol, GROUPS) == group


PROGRAMS_REPORT = """\
# Overhead  Command      Symbol
    40.00%  swapper      [k] pv_native_safe_halt
    20.00%  iperf3       [k] _copy_from_iter
    10.00%  nft          [k] nft_set_lookup_global
     5.00%  python3      [.] _PyEval_EvalFrameDefault
     5.00%  iperf3       [.] iperf_send
     5.00%  ksoftirqd/1  [k] vxlan_rcv
    10.00%  swapper      [k] nft_do_chain
     5.00%  kworker/0:1  [k] __do_softirq
"""


class TestProgramShares:
    def test_other_programs_work_is_theirs_kernel_and_user(self) -> None:
        """Another program's nft calls are not the lab's nftables; softirq in the idle
        task and kernel threads is."""
        found = shares(PROGRAMS_REPORT, GROUPS)
        assert found["busy_percent"] == 60.0
        assert found["groups"] == {
            "copy and checksum": round(100 * 20 / 60, 2),
            "other programs": 25.0,
            "user": round(100 * 5 / 60, 2),
            "VXLAN and UDP": round(100 * 5 / 60, 2),
            "nftables": round(100 * 10 / 60, 2),
            "softirq, locks, scheduling": round(100 * 5 / 60, 2),
        }
        assert found["programs"]["nft"] == round(100 * 10 / 60, 2)
        assert "nft_set_lookup_global" not in dict(found["top"])
        assert "_PyEval_EvalFrameDefault" not in dict(found["top"])


class TestSummary:
    def test_medians_extremes_and_ratios(self) -> None:
        """Throughput ratio against inverse CPU ratio, per direction."""
        made = results()
        upload = made["summary"]["upload rescued"]
        assert (upload["runs"], upload["gbit_per_s"]) == (3, 6.0)
        assert (upload["min_gbit_per_s"], upload["max_gbit_per_s"]) == (5.5, 6.5)
        assert upload["busiest_cpu"] == 0.98
        assert made["compare"]["upload"]["throughput_ratio"] == pytest.approx(0.6)
        assert made["compare"]["upload"]["inverse_cpu_ratio"] == pytest.approx(1 / 1.6)
        assert made["compare"]["download"]["throughput_ratio"] == pytest.approx(0.9)
        assert made["compare"]["upload"]["saturated"] is True
        assert results(rescued_busy=0.7)["compare"]["upload"]["saturated"] is False
        pinned = made["compare"]["upload pinned"]
        assert made["summary"]["upload rescued pinned"]["sender_cpu_seconds_per_gb"] == (
            pytest.approx(1.0)
        )
        assert pinned["throughput_ratio"] == pytest.approx(7.5 / 12)
        assert pinned["inverse_cpu_ratio"] == pytest.approx(0.6)
        assert pinned["saturated"] is True
        assert results(pinned_busy=0.8)["compare"]["upload pinned"]["saturated"] is False

    def test_results_stored_before_the_pinned_cases_still_render(self) -> None:
        older = results()
        older["runs"] = [r for r in older["runs"] if not r["case"].endswith("pinned")]
        older["summary"] = summarize(older["runs"])
        older["compare"] = compare(older["summary"])
        assert "upload pinned" not in older["compare"]
        assert "Pinned upload" not in render(older) + conclusion(older)


class TestRender:
    def test_tables_show_every_case_and_what_rescue_adds(self) -> None:
        page = render(results())
        for case in CASES:
            assert f"| {case} | 3 |" in page
        assert "| upload rescued | 3 | 6.00 | 5.50 - 6.50 | 98% | 98% | 1.600 | 7 |" in page
        assert "| upload | 60% | 62% | yes |" in page
        # VXLAN: 0 direct, 1.6 * 18.75% = 0.3 rescued; TCP 0.5 in all but 1.1 * 50% download.
        assert "| VXLAN and UDP | 0.000 | 0.300 | 0.000 | 0.000 | +0.300 | +0.000 |" in page
        assert "| TCP | 0.500 | 0.500 | 0.500 | 0.550 | +0.000 | +0.050 |" in page
        assert "| **all** | 1.000 | 1.600 | 1.000 | 1.100 | +0.600 | +0.100 |" in page
        assert "| **all but other programs** | 1.000 | 1.600 | 1.000 | 1.100 | +0.600 |" in page
        assert "| ksoftirqd/0 | 20.0 | 20.0 | 20.0 | 20.0 |" in page
        assert "| upload rescued pinned | 3 | 7.50 | 7.00 - 8.00 | 95% |" in page
        assert "| medians | 62% | 60% | 95% | 95% | 0.600 | 1.000 |" in page

    def test_a_figure_the_stored_results_lack_is_not_shown_as_zero(self) -> None:
        older = results()
        del older["summary"]["upload direct"]["retransmits"]
        assert "| upload direct | 3 | 10.00 | 9.50 - 10.50 | 97% | 97% | 1.000 | n/a |" in (
            render(older)
        )

    def test_conclusion_says_whether_the_cores_were_the_limit(self) -> None:
        text = conclusion(results())
        assert "**upload** rescued 60% of direct (6.00 against 10.00 Gbit/s)" in text
        assert "both cores were saturated" in text
        assert "matches the inverse CPU ratio (62%): the two cores are the limit" in text
        assert "(1.60 s against 1.00 s per GB) the rescued path's extra +0.60 s per GB" in text
        assert "VXLAN and UDP +0.30" in text
        assert "veth, IP and forwarding +0.30" in text
        assert "TCP +" not in text.split("**download**")[0]  # only what rescue adds
        assert "Other programs were at most 0.0%" in text
        busy = results()
        busy["profiles"]["upload direct"]["groups"]["other programs"] = 20.0
        busy["profiles"]["upload rescued"]["groups_cpu_seconds_per_gb"]["other programs"] = 0.9
        noisy = conclusion(busy)
        assert "Other programs ran meanwhile (up to 20%" in noisy
        # Someone else's work is not what the rescued path adds.
        assert "the rescued path's extra +0.60 s per GB" in noisy
        assert "other programs +0.90" not in noisy
        # Saturated by someone else's work too: no verdict on the lab.
        assert "the two cores are the limit" not in noisy
        assert "other programs' work filled the cores too: not a verdict" in noisy
        idle = conclusion(results(rescued_busy=0.7))
        assert "the host was not saturated" in idle
        assert "the two cores are the limit" not in idle
        # Pinned: CPU 0 full in both, 62% against 60%: the sender's core is the limit.
        assert "**Pinned upload** (sender on CPU 0, receiver on CPU 1): rescued 62%" in text
        assert "one core, the sender's, is the limit" in text
        assert "one core, the sender's, is the limit" not in noisy
        half = conclusion(results(pinned_busy=0.6))
        assert "the sending core was not shown to be the limit" in half
        assert "one core, the sender's, is the limit" not in half

    def test_conclusion_goes_between_the_markers_only(self) -> None:
        page = f"before\n{BEGIN}\nold text\n{END}\nafter\n"
        done = with_conclusion(page, results())
        assert done.startswith(f"before\n{BEGIN}\n- **Rescued bulk throughput**")
        assert done.endswith(f"\n{END}\nafter\n")
        assert "old text" not in done
        with pytest.raises(ValueError, match="markers"):
            with_conclusion("no markers here", results())


def test_rescue_page_carries_the_stored_conclusion() -> None:
    """docs/rescue.md's conclusion is the one rendered from docs/benchmarks/rescued.json."""
    stored = json.loads((DOCS / "benchmarks" / "rescued.json").read_text(encoding="utf-8"))
    page = (DOCS / "rescue.md").read_text(encoding="utf-8")
    assert page == with_conclusion(page, stored), (
        "docs/rescue.md differs from rescued.json: run "
        "`python -m tests.benchmarks.rescued_throughput --from-json`"
    )
    assert (DOCS / "benchmarks" / "rescued.md").read_text(encoding="utf-8") == render(stored)
