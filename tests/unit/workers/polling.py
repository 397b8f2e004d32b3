"""Waiting on the loop for a condition, against a generous deadline (never a window)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DEADLINE = 10.0


async def until(predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what} (waited {timeout:g}s)"
        await asyncio.sleep(0.005)
