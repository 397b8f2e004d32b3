"""Reading a pid file: what counts as a pid, and what error says why not."""

from __future__ import annotations

import pytest

from anycast_announcer.events.processes import parse_pid


@pytest.mark.parametrize(
    ("text", "pid"), [(b"1234\n", 1234), (b"  42 ", 42), (b"4194304", 4194304)]
)
def test_a_pid(text: bytes, pid: int) -> None:
    """One decimal number, surrounded by whitespace or not."""
    assert parse_pid(text) == pid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"nginx", "not a pid"),
        (b"12 34", "not a pid"),
        (b"-5", "not a pid"),
        (b"0", "out of range"),
        (b"4194305", "out of range"),
        (b"1" * 100, "too long"),
    ],
)
def test_not_a_pid(text: bytes, message: str) -> None:
    """Garbage is refused with a reason, never read as some pid."""
    with pytest.raises(ValueError, match=message):
        parse_pid(text)
