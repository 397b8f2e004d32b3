"""Running the drain hook: a command or an HTTP call that tells the application to shed
its connections. Bounded by a timeout; a failure is reported, never raised, because a
broken hook must not keep a server from being drained.

A command hook runs exactly as a command check does (``checks.command``): no shell, its
own process group killed and reaped whatever happens, the last line of stderr in the
outcome. Only the meaning of the exit status differs."""

from __future__ import annotations

import asyncio

import aiohttp

from anycast_announcer.checks import command
from anycast_announcer.checks._result import timeout_reason
from anycast_announcer.config import CommandCheck, CommandHook, HttpHook

__all__ = ["run_hook"]


async def run_hook(hook: CommandHook | HttpHook, timeout: float) -> tuple[bool, str]:
    """Run the hook; (ok, short description of the outcome)."""
    if isinstance(hook, CommandHook):
        result = await command.probe(CommandCheck(type="command", argv=hook.argv), timeout)
        return result.ok, result.reason
    try:
        async with asyncio.timeout(timeout):
            return await _call_url(hook)
    except TimeoutError:
        return False, timeout_reason(timeout)


async def _call_url(hook: HttpHook) -> tuple[bool, str]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.request(hook.method, hook.url, allow_redirects=False) as response,
        ):
            return 200 <= response.status < 300, f"http status {response.status}"
    except aiohttp.ClientError as exc:
        return False, f"http error: {type(exc).__name__}"
