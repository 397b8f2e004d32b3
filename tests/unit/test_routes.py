"""Attribute encodings: the link-bandwidth community's exact bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.routes import (
    AS_TRANS,
    link_bandwidth_community,
    link_bandwidth_global_as,
    weight_community_value,
)


class TestLinkBandwidth:
    def test_transitive_10g_as_65001(self) -> None:
        """The golden value FRR itself sends for AS 65001 at 10 Gbit/s."""
        assert link_bandwidth_community(65001, 10e9) == "0x0004fde94e9502f9"

    def test_non_transitive_10g_as_65001(self) -> None:
        """The 0x40 type differs only in its first byte."""
        assert link_bandwidth_community(65001, 10e9, transitive=False) == "0x4004fde94e9502f9"

    def test_1g_is_125_million_bytes_per_second(self) -> None:
        """Bandwidth travels as bytes per second, not bits."""
        raw = bytes.fromhex(link_bandwidth_community(65001, 1e9)[2:])
        assert struct.unpack("!f", raw[4:])[0] == 125_000_000.0

    def test_above_34g_still_encodes(self) -> None:
        """100G exceeds 2^32-1 bytes/s, which ExaBGP's keyword refuses; the float does not."""
        raw = bytes.fromhex(link_bandwidth_community(65001, 100e9)[2:])
        assert struct.unpack("!f", raw[4:])[0] == pytest.approx(12.5e9)

    def test_rejects_4_byte_as(self) -> None:
        """The field is two bytes; a caller must map 4-byte ASes first."""
        with pytest.raises(ValueError, match="2 bytes"):
            link_bandwidth_community(4_200_000_000, 1e9)

    @given(st.integers(0, 0xFFFF), st.floats(0, 4e12, allow_nan=False))
    def test_layout_round_trips(self, asn: int, bits: float) -> None:
        """Any AS and bandwidth decode back to type 0x00, subtype 0x04, the AS, bytes/s."""
        raw = bytes.fromhex(link_bandwidth_community(asn, bits)[2:])
        kind, subtype, decoded_as, value = struct.unpack("!BBHf", raw)
        assert (kind, subtype, decoded_as) == (0x00, 0x04, asn)
        assert value == pytest.approx(bits / 8, rel=1e-6)


class TestGlobalAs:
    def test_two_byte_local_as_is_used(self) -> None:
        assert link_bandwidth_global_as(65001) == 65001

    def test_four_byte_local_as_becomes_as_trans(self) -> None:
        """RFC 6793's AS_TRANS stands in for an AS that does not fit."""
        assert link_bandwidth_global_as(4_200_000_000) == AS_TRANS == 23456

    def test_override_wins(self) -> None:
        assert link_bandwidth_global_as(4_200_000_000, override=64512) == 64512


class TestWeightCommunity:
    def test_units(self) -> None:
        assert weight_community_value(25_000, 1000) == 25

    def test_clamped_to_one_and_65535(self) -> None:
        """A tiny server still has weight 1; a huge one does not overflow 16 bits."""
        assert weight_community_value(1, 1000) == 1
        assert weight_community_value(1e9, 1) == 65535
