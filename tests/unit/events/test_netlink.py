"""Netlink framing: messages, attributes and errors, against hand-built bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.events.netlink import (
    NetlinkFormatError,
    attributes,
    error_code,
    messages,
    pack_request,
)
from tests.unit.events.diagmsg import attr


def test_messages_split_a_datagram_and_skip_padding() -> None:
    """Two messages in one datagram, the first with a payload that needs padding."""
    first = pack_request(20, 2, 7, b"abcde")
    data = first + bytes(-len(first) % 4) + pack_request(3, 2, 7, b"")
    found = list(messages(data))
    assert [(m.type, m.seq, m.payload) for m in found] == [(20, 7, b"abcde"), (3, 7, b"")]


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=6))
def test_messages_round_trip(parts: list[tuple[int, bytes]]) -> None:
    """Whatever we pack (each message padded), messages() gives back type and payload."""
    data = b""
    for kind, payload in parts:
        message = pack_request(kind, 0, 1, payload)
        data += message + bytes(-len(message) % 4)
    assert [(m.type, m.payload) for m in messages(data)] == parts


@pytest.mark.parametrize("length", [4, 15, 200])
def test_a_bad_length_is_a_format_error(length: int) -> None:
    """A header whose length is shorter than itself or runs past the datagram."""
    data = struct.pack("=IHHII", length, 20, 0, 0, 0) + bytes(16)
    with pytest.raises(NetlinkFormatError, match="length"):
        list(messages(data))


def test_attributes_mask_the_flag_bits_and_keep_values() -> None:
    """NLA_F_NESTED (0x8000) is not part of the type; values keep their exact bytes."""
    payload = attr(11, b"\x01") + attr(0x8000 | 3, b"lo\0") + attr(1, b"\x0a\x00\x00\x01")
    assert attributes(payload) == {11: b"\x01", 3: b"lo\0", 1: b"\x0a\x00\x00\x01"}


def test_an_attribute_running_past_the_payload_is_a_format_error() -> None:
    """A length longer than what is left."""
    with pytest.raises(NetlinkFormatError, match="attribute"):
        attributes(struct.pack("=HH", 40, 1) + b"abcd")


def test_error_code_is_positive_errno() -> None:
    """NLMSG_ERROR carries -errno; 0 is an acknowledgement."""
    (message,) = messages(pack_request(2, 0, 1, struct.pack("=i", -22) + bytes(16)))
    assert error_code(message) == 22
