"""Counters: both families' tables summed, per peer and globally."""

from __future__ import annotations

from typing import Any

from anycast_announcer.rescue.counters import RescueCounters, Traffic, parse_counters, token_address


def document(**counters: tuple[int, int]) -> dict[str, Any]:
    """An ``nft -j list counters table ...`` document with these counters."""
    return {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            *(
                {
                    "counter": {
                        "family": "ip",
                        "name": name,
                        "table": "anycast_rescue",
                        "handle": i,
                        "packets": packets,
                        "bytes": size,
                    }
                }
                for i, (name, (packets, size)) in enumerate(counters.items())
            ),
        ]
    }


def test_nothing_installed_is_all_zeros() -> None:
    assert parse_counters([]) == RescueCounters()


def test_families_are_summed_and_replicas_count_as_forwarded_to_every_peer() -> None:
    v4 = document(
        fwd_10_2_2_2=(10, 1000),
        rx_10_2_2_2=(3, 300),
        bad_10_2_2_2=(1, 60),
        fbtx_10_2_2_2=(2, 120),
        fbrx_10_2_2_2=(4, 240),
        fwd_10_2_3_2=(0, 0),
        replicated=(5, 500),
        orphans=(1, 52),
        icmp_relayed=(2, 1120),
        underlay_refused=(7, 700),
        overlay_refused=(0, 0),
    )
    v6 = document(fwd_10_2_2_2=(1, 100), replicated=(1, 80), rx_10_2_3_2=(9, 900))
    counters = parse_counters([v4, v6])
    by_peer = {peer.peer: peer for peer in counters.peers}
    assert set(by_peer) == {"10.2.2.2", "10.2.3.2"}
    two = by_peer["10.2.2.2"]
    assert two.forwarded_learnt == Traffic(11, 1100)
    assert two.forwarded == Traffic(17, 1680)  # learnt + one copy of each replicated packet
    assert two.received == Traffic(3, 300)
    assert two.refused == Traffic(1, 60)
    assert (two.feedback_sent, two.feedback_received) == (Traffic(2, 120), Traffic(4, 240))
    assert by_peer["10.2.3.2"].received == Traffic(9, 900)
    assert counters.replicated == Traffic(6, 580)
    assert counters.underlay_refused == Traffic(7, 700)
    assert counters.as_json()["peers"][0]["forwarded"] == {"packets": 17, "bytes": 1680}


def test_tokens_map_back_to_addresses() -> None:
    assert token_address("10_2_1_2") == "10.2.1.2"
    assert token_address("fd00_2_1__2") == "fd00:2:1::2"
    assert token_address("2001_db8__1_2_3") == "2001:db8::1:2:3"


def test_the_directory_counters_are_summed_and_reported() -> None:
    v4 = document(dir_queries=(5, 500), dir_forwarded=(2, 200), dir_recorded=(7, 420))
    v6 = document(dir_queries=(1, 90), dir_unknown=(3, 270))
    counters = parse_counters([v4, v6])
    assert counters.dir_queries == Traffic(6, 590)
    assert counters.dir_unknown == Traffic(3, 270)
    assert counters.peers == ()  # "dir_" names no peer
    report = counters.as_json()
    assert report["dir_forwarded"] == {"packets": 2, "bytes": 200}
    assert report["dir_recorded"] == {"packets": 7, "bytes": 420}
    assert report["dir_registered"] == {"packets": 0, "bytes": 0}
