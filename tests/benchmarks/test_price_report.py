"""The price benchmark's perf parsing: pure, so it runs with the unit tests' speed."""

from __future__ import annotations

from tests.benchmarks.price import group_of, shares

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
