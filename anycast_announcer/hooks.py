"""Running the drain hook: a command or an HTTP call that tells the application to shed
its connections. Bounded by a timeout; a failure is reported, never raised, because a
broken hook must not keep a server from being drained."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import aiohttp

from anycast_announcer.config import CommandHook, HttpHook

__all__ = ["run_hook"]


async def run_hook(hook: CommandHook | HttpHook, timeout: float) -> tuple[bool, str]:
    """Run the hook; (ok, short description of the outcome)."""
    try:
        async with asyncio.timeout(timeout):
            if isinstance(hook, CommandHook):
                return await _run_command(hook)
            return await _call_url(hook)
    except TimeoutError:
        return False, f"timeout after {timeout:g}s"


async def _run_command(hook: CommandHook) -> tuple[bool, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *hook.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        return False, f"cannot run: {exc.strerror}"
    try:
        status = await process.wait()
    finally:
        # On timeout or cancellation, and for children left behind: the whole group goes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            await process.wait()
    return status == 0, f"exit status {status}"


async def _call_url(hook: HttpHook) -> tuple[bool, str]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(hook.method, hook.url, allow_redirects=False) as response,
        ):
            return 200 <= response.status < 300, f"http status {response.status}"
    except aiohttp.ClientError as exc:
        return False, f"http error: {type(exc).__name__}"
