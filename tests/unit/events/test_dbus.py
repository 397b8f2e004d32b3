"""The D-Bus wire format: signatures, marshalling with alignment, messages."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.events.dbus import (
    METHOD_CALL,
    SIGNAL,
    DBusError,
    decode_message,
    encode_message,
    message_length,
    split_signature,
)
from anycast_announcer.events.units import serving_state, unit_path

PATH, INTERFACE, MEMBER, DESTINATION = 1, 2, 3, 6


@pytest.mark.parametrize(
    ("signature", "types"),
    [
        ("", []),
        ("sa{sv}as", ["s", "a{sv}", "as"]),
        ("a(yv)u", ["a(yv)", "u"]),
        ("aa{ss}", ["aa{ss}"]),
    ],
)
def test_split_signature(signature: str, types: list[str]) -> None:
    """Complete types, nested containers kept whole."""
    assert split_signature(signature) == types


@pytest.mark.parametrize("signature", ["a", "(s", "{s}", "z", "()"])
def test_bad_signature(signature: str) -> None:
    """Incomplete or unknown types are refused."""
    with pytest.raises(DBusError, match="InvalidSignature"):
        split_signature(signature)


def test_hello_bytes() -> None:
    """A Hello call, byte for byte: header, fields array with alignment, no body."""
    data = encode_message(
        METHOD_CALL,
        1,
        {PATH: "/org/freedesktop/DBus", MEMBER: "Hello", DESTINATION: "org.freedesktop.DBus"},
    )
    assert data[:12] == b"l\x01\x00\x01" + struct.pack("<II", 0, 1)
    (fields_length,) = struct.unpack_from("<I", data, 12)
    assert data[16:24] == b"\x01\x01o\x00" + struct.pack("<I", 21)  # PATH, variant 'o', length
    assert len(data) == message_length(data[:16]) == 16 + fields_length + (-fields_length % 8)


def test_properties_changed_round_trip() -> None:
    """The signal the unit watch reads: s a{sv} as, variants of several types."""
    body: tuple[Any, ...] = (
        "org.freedesktop.systemd1.Unit",
        {"ActiveState": ("s", "failed"), "ActiveExitTimestamp": ("t", 1 << 40), "Ok": ("b", True)},
        ["SubState"],
    )
    data = encode_message(
        SIGNAL, 7, {PATH: "/org/freedesktop/systemd1/unit/x", INTERFACE: "i.f", MEMBER: "P"},
        "sa{sv}as", body,
    )  # fmt: skip
    message = decode_message(data)
    assert (message.type, message.serial, message.member, message.path) == (
        SIGNAL, 7, "P", "/org/freedesktop/systemd1/unit/x",
    )  # fmt: skip
    assert message.body == (
        "org.freedesktop.systemd1.Unit",
        {"ActiveState": "failed", "ActiveExitTimestamp": 1 << 40, "Ok": True},
        ["SubState"],
    )


@given(
    st.lists(st.tuples(st.integers(0, 255), st.text(max_size=8), st.integers(0, 2**64 - 1))),
    st.dictionaries(st.text(max_size=5), st.integers(-(2**31), 2**31 - 1), max_size=4),
)
def test_round_trip_of_nested_containers(
    items: list[tuple[int, str, int]], mapping: dict[str, int]
) -> None:
    """Arrays of structs with mixed alignment, and dicts, come back as they went in."""
    data = encode_message(METHOD_CALL, 3, {PATH: "/", MEMBER: "M"}, "a(yst)a{si}", (items, mapping))
    assert decode_message(data).body == (list(items), mapping)


def test_truncated_message_is_an_error() -> None:
    """A body cut short raises, never returns garbage."""
    data = encode_message(METHOD_CALL, 1, {PATH: "/", MEMBER: "M"}, "s", ("hello",))
    with pytest.raises(DBusError, match="Truncated"):
        decode_message(data[:-4])


@pytest.mark.parametrize(
    ("unit", "path"),
    [
        ("sshd.service", "sshd_2eservice"),
        ("getty@tty1.service", "getty_40tty1_2eservice"),
        ("1foo.service", "_31foo_2eservice"),
        ("a-b.service", "a_2db_2eservice"),
    ],
)
def test_unit_path(unit: str, path: str) -> None:
    """systemd's escaping: letters, non-leading digits kept, everything else _xx."""
    assert unit_path(unit) == f"/org/freedesktop/systemd1/unit/{path}"


@pytest.mark.parametrize(
    ("state", "serving"),
    [("active", True), ("reloading", True), ("failed", False), ("activating", False),
     ("deactivating", False), ("inactive", False)],
)  # fmt: skip
def test_serving_states(state: str, serving: bool) -> None:
    """Only active and reloading units run their service."""
    assert serving_state(state) is serving
