"""The price benchmark's perf parsing: pure, so it runs with the unit tests' speed."""

from __future__ import annotations

from tests.benchmarks.price import group_of, paired, render, shares

REPORT = """\
# Samples: 1K of event 'cpu-clock:ppp'
#
# Overhead  Symbol
# ........  ......
#
    50.00%  [k] pv_native_safe_halt
    20.00%  [k] nf_conntrack_in
    10.00%  [k] nft_do_chain
     5.00%  [k] nft_exthdr_tcp_set_eval
     5.00%  [k] nf_hook_slow
     5.00%  [.] _PyEval_EvalFrameDefault
     5.00%  [k] _copy_from_iter
"""


class TestShares:
    def test_groups_kernel_symbols_by_cost(self) -> None:
        """Conntrack, nftables rules, the clamp's exthdr and the hook runner are apart."""
        assert group_of("nf_conntrack_in") == "conntrack"
        assert group_of("tcp_in_window") == "conntrack"
        assert group_of("nft_do_chain") == "nftables rules"
        assert group_of("nft_exthdr_tcp_set_eval") == "MSS clamp (nft_exthdr)"
        assert group_of("nf_hook_slow") == "netfilter hooks"
        assert group_of("_copy_from_iter") == "other"

    def test_shares_are_of_busy_samples(self) -> None:
        """The idle loop is left out and the rest scaled to 100; user symbols are 'user'."""
        result = shares(REPORT)
        assert result["busy_percent"] == 50.0
        assert result["groups"] == {
            "conntrack": 40.0,
            "nftables rules": 20.0,
            "MSS clamp (nft_exthdr)": 10.0,
            "netfilter hooks": 10.0,
            "user": 10.0,
            "other": 10.0,
        }
        assert result["top"][0] == ("nf_conntrack_in", 40.0)


def _row(index: int, case: str, rate: float) -> dict[str, object]:
    return {"run": index, "case": case, "gbit_per_s": rate}


def _rows() -> list[dict[str, object]]:
    return [
        # The host slows down round by round; rescue costs 10% in every round.
        *(_row(i, "off", rate) for i, rate in enumerate((16.0, 12.0, 8.0))),
        *(_row(i, "on", rate) for i, rate in enumerate((14.4, 10.8, 7.2))),
        *(_row(i, "on, no MSS clamp", rate) for i, rate in enumerate((16.0, 12.0, 8.0))),
        # A round whose off run is missing pairs nothing.
        _row(3, "on, clamp inert", 15.0),
    ]


class TestPaired:
    def test_each_round_against_its_own_off(self) -> None:
        assert [round(r, 3) for r in paired(_rows(), "on")] == [0.9, 0.9, 0.9]
        assert paired(_rows(), "on, clamp inert") == []

    def test_report_shows_the_paired_ratio_the_medians_blur(self) -> None:
        cases = ("off", "on", "on, clamp inert", "on, no MSS clamp")
        results = {
            "runs": _rows(),
            "medians": {"off": 12.0, "on": 10.8, "on, clamp inert": 15.0, "on, no MSS clamp": 12.0},
            "profiles": {case: {"groups": {}, "top": [("f", 1.0)]} for case in cases},
        }
        pairs = render(results).split("Paired by round")[1].split("Share of")[0]
        assert "| on | 3 | -10.0% | 0 of 3 |" in pairs
        assert "| on, no MSS clamp | 3 | +0.0% | 3 of 3 |" in pairs
        # A case with no paired round gets no row rather than a made-up one.
        assert "on, clamp inert" not in pairs
