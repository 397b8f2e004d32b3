"""The relay's line filter: heartbeats vanish, other bytes pass unchanged, memory is bounded."""

from __future__ import annotations

import sys

from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.exabgp.bridge import (
    HEARTBEAT,
    LINE_MAX,
    LineFilter,
    bridge_argv,
    heartbeat_interval,
)


def feed_all(chunks: list[bytes], line_max: int = LINE_MAX) -> tuple[bytes, int, int]:
    """(everything forwarded, lines counted, most bytes ever held back)."""
    line_filter = LineFilter(line_max)
    out, lines, held = b"", 0, 0
    for chunk in chunks:
        forwarded, counted = line_filter.feed(chunk)
        out += forwarded
        lines += counted
        held = max(held, line_filter.pending)
    return out, lines, held


def test_heartbeat_is_dropped_and_counted() -> None:
    out, lines, _ = feed_all([b"announce a\n" + HEARTBEAT + b"announce b\n"])
    assert out == b"announce a\nannounce b\n"
    assert lines == 3


def test_heartbeat_split_across_reads_is_still_dropped() -> None:
    out, lines, _ = feed_all([HEARTBEAT[:5], HEARTBEAT[5:-1], HEARTBEAT[-1:]])
    assert (out, lines) == (b"", 1)


def test_only_the_exact_line_is_a_heartbeat() -> None:
    """A command that merely starts or ends like a heartbeat reaches ExaBGP."""
    lookalikes = [HEARTBEAT[:-1] + b"x\n", b"x" + HEARTBEAT, HEARTBEAT.upper()]
    out, lines, _ = feed_all(lookalikes)
    assert out == b"".join(lookalikes)
    assert lines == 3


def test_unfinished_line_is_held_until_its_end() -> None:
    line_filter = LineFilter()
    assert line_filter.feed(b"neighbor 10.0.0.1 ann") == (b"", 0)
    assert line_filter.feed(b"ounce route\n") == (b"neighbor 10.0.0.1 announce route\n", 1)


def test_a_long_line_streams_through_with_bounded_memory() -> None:
    """A megabyte without newline is passed on in pieces, never collected whole."""
    line = b"y" * 1_000_000 + b"\n"
    chunks = [line[i : i + 4096] for i in range(0, len(line), 4096)] + [HEARTBEAT, b"z\n"]
    out, lines, held = feed_all(chunks, line_max=64 * 1024)
    assert out == line + b"z\n"
    assert lines == 3
    assert held <= 64 * 1024 + 4096


@given(
    st.lists(
        st.one_of(st.just(HEARTBEAT), st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))),
        max_size=20,
    ).map(lambda parts: [part if part == HEARTBEAT else part + b"\n" for part in parts]),
    st.integers(min_value=1, max_value=50),
)
def test_any_split_gives_the_same_result(lines: list[bytes], cut: int) -> None:
    """However the stream is cut into reads, the output is the input minus heartbeats."""
    stream = b"".join(lines)
    chunks = [stream[i : i + cut] for i in range(0, len(stream), cut)]
    out, counted, _ = feed_all(chunks, line_max=len(HEARTBEAT))
    assert out == b"".join(line for line in lines if line != HEARTBEAT)
    assert counted == len(lines)


def test_argv_and_interval() -> None:
    assert bridge_argv("/run/a b/api.sock", 5.0, python="/py") == [
        "/py",
        "-m",
        "anycast_announcer.exabgp.bridge",
        "--watchdog",
        "5",
        "/run/a b/api.sock",
    ]
    assert bridge_argv("/s", 0)[1:] == ["-m", "anycast_announcer.exabgp.bridge", "/s"]
    assert bridge_argv("/s", 0)[0] == sys.executable
    assert heartbeat_interval(6.0) == 2.0
