"""The history on the real supervisor: a drain through the CLI shows in /history and in
``status --history``, with its reason, as the supervisor fed the core's observations."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from anycast_announcer.app import Supervisor
from anycast_announcer.cli import EXIT_OK, main
from anycast_announcer.historymodels import SidecarHistory
from tests.unit.http.test_end_to_end import PREFIX, _poll, running

__all__ = ["running"]  # the fixture, shared with the end-to-end tests


async def _history(url: str, window: str = "hour") -> SidecarHistory:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/history", params={"window": window}) as response,
    ):
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return SidecarHistory.model_validate(data)


async def test_a_drain_is_recorded_with_its_reason(
    running: tuple[Supervisor, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """withdrawn (start) -> announced -> draining -> drained, the session and the probes."""
    _, url, token_file = running

    async def states() -> list[str]:
        (prefix,) = (await _history(url)).prefixes
        return [change.state for change in prefix.changes]

    async def announced() -> bool:
        return (await states())[-1:] == ["announced"]

    await _poll(announced, "the history never showed the prefix announced")
    drain = ["drain", PREFIX, "--reason", "kernel upgrade", "--url", url]
    assert await asyncio.to_thread(main, [*drain, "--token-file", token_file]) == EXIT_OK

    async def drained() -> bool:
        return (await states())[-1:] == ["drained"]

    await _poll(drained, "the history never showed the drain")
    history = await _history(url)
    (prefix,) = history.prefixes
    assert [c.state for c in prefix.changes][:2] == ["withdrawn", "announced"]
    assert "draining" in [c.state for c in prefix.changes]
    assert prefix.changes[-1].reason == "drained: kernel upgrade (by an operator)"
    (peer,) = history.peers
    assert [c.state for c in peer.changes] == ["down", "up"]
    assert peer.changes[-1].reason == "session established"
    (web,) = history.services
    assert web.changes[0].state == "up"
    assert sum(web.probes.probes) >= 1
    assert sum(web.probes.failures) == 0

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "--history", "--url", url]) == EXIT_OK
    out = capsys.readouterr().out
    assert "drained" in out
    assert "kernel upgrade" in out
    async with aiohttp.ClientSession() as session, session.get(f"{url}/") as response:
        page = await response.text()
    assert f'data-prefix-history="{PREFIX}"' in page
    assert 'data-state="drained"' in page
