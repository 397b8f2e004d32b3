"""Drain hooks: commands run like command checks; failures are outcomes, never errors."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from anycast_announcer.config import CommandHook, HttpHook
from anycast_announcer.hooks import run_hook


def _command(*argv: str) -> CommandHook:
    return CommandHook(type="command", argv=list(argv))


class TestCommandHook:
    async def test_exit_zero_is_accepted(self) -> None:
        assert await run_hook(_command("true"), 5) == (True, "exit status 0")

    async def test_failure_says_why_with_stderr(self) -> None:
        ok, outcome = await run_hook(
            _command(sys.executable, "-c", "import sys; sys.exit('app is busy')"), 5
        )
        assert (ok, outcome) == (False, "exit status 1: app is busy")

    async def test_missing_program_is_an_outcome(self) -> None:
        ok, outcome = await run_hook(_command("/nonexistent/hook"), 5)
        assert not ok
        assert outcome.startswith("cannot run")

    async def test_timeout_kills_the_whole_group(self, tmp_path: Path) -> None:
        """A hook that forks a helper and hangs leaves nothing behind."""
        pid_file = tmp_path / "child.pid"
        script = (
            "import subprocess, time, sys;"
            "child = subprocess.Popen(['sleep', '60']);"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid));"
            "time.sleep(60)"
        )
        ok, outcome = await run_hook(_command(sys.executable, "-c", script), 1.0)
        assert (ok, outcome) == (False, "timeout after 1s")
        child = int(pid_file.read_text())
        for _ in range(100):  # SIGKILL is delivered at once; reaping may lag a little
            if not _alive(child):
                break
            await asyncio.sleep(0.05)
        assert not _alive(child), "the hook's child survived"


class TestHttpHook:
    async def test_status_decides(self) -> None:
        app = web.Application()

        async def shed(request: web.Request) -> web.Response:
            return web.Response(status=204 if request.method == "POST" else 405)

        app.router.add_route("*", "/drain", shed)
        async with TestServer(app, host="127.0.0.1") as server:
            url = str(server.make_url("/drain"))
            assert await run_hook(HttpHook(type="http", url=url), 5) == (True, "http status 204")
            put = HttpHook(type="http", url=url, method="PUT")
            assert await run_hook(put, 5) == (False, "http status 405")

    async def test_nothing_listening_is_an_outcome(self) -> None:
        ok, outcome = await run_hook(HttpHook(type="http", url="http://127.0.0.1:9/x"), 5)
        assert (ok, outcome) == (False, "http error: ClientConnectorError")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of an exited child still answers kill(0): look at its state.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"
