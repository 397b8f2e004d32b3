"""The underlay MTU warnings of check-config and start-up."""

from __future__ import annotations

from anycast_announcer.rescue.mtu import mtu_warnings
from tests.unit.rescue.plans import plan


def test_jumbo_underlay_carries_full_size_packets_silently() -> None:
    assert mtu_warnings(plan(mtu=1550)) == []
    assert mtu_warnings(plan(mtu=9000)) == []


def test_a_1500_underlay_with_clamping_says_what_is_clamped() -> None:
    (warning,) = mtu_warnings(plan(mtu=1500))
    assert warning.startswith("rescue: the underlay MTU 1500 leaves 1450 bytes")
    assert "clamped to 1410 (IPv4) / 1390 (IPv6)" in warning
    assert "1550" in warning


def test_without_clamping_full_size_packets_cannot_be_rescued() -> None:
    (warning,) = mtu_warnings(plan("  clamp_mss: false\n", mtu=1500))
    assert warning.startswith("rescue.clamp_mss: off")
    assert "at least 1550" in warning


def test_an_overlay_below_the_ipv6_minimum_is_always_reported() -> None:
    (warning,) = mtu_warnings(plan(mtu=1300))
    assert "less than the 1280 IPv6 needs" in warning
