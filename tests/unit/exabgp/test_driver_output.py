"""ExaBGP's own output is relayed to our log however it is shaped (issue 10, class 8)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any, cast

from structlog.testing import capture_logs

from anycast_announcer.exabgp.driver import ExabgpDriver


class _Process:
    def __init__(self, stdout: asyncio.StreamReader) -> None:
        self.stdout = stdout


async def _relay(chunks: list[bytes]) -> list[MutableMapping[str, Any]]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    relay = ExabgpDriver._relay_output  # the relay alone, without a process
    with capture_logs() as logs:
        await asyncio.wait_for(relay(cast(Any, None), cast(Any, _Process(reader))), 5)
    assert reader.at_eof(), "the pipe was not emptied"
    return [entry for entry in logs if entry["event"] == "exabgp_output"]


async def test_a_line_over_64_kib_neither_kills_nor_wedges_the_relay() -> None:
    """asyncio's readline raised on it, the task died and ExaBGP blocked on a full pipe."""
    logged = await _relay([b"x" * 300_000 + b"\n", b"next line\n"])
    assert [len(entry["line"]) for entry in logged] == [500, 9]
    assert logged[1]["line"] == "next line"


async def test_lines_split_across_reads_and_a_last_line_without_newline() -> None:
    logged = await _relay([b"first ha", b"lf\nsecond\nthird"])
    assert [entry["line"] for entry in logged] == ["first half", "second", "third"]


async def test_undecodable_bytes_are_replaced() -> None:
    logged = await _relay([b"\xff\xfe oops\n"])
    assert logged[0]["line"] == "\ufffd\ufffd oops"
