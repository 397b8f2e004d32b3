"""Background tasks that nobody awaits, held and watched in one place.

The event loop keeps only weak references to tasks, so a task nobody holds may vanish
mid-flight; and a task nobody awaits fails silently. ``BackgroundTasks`` holds each
task until it is done and logs a failure under its owner's event name (a failed
reconfiguration, a resync that could not read the kernel): the shell's owners
(supervisor, address watch, unit watch) share it instead of each keeping a set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal

import structlog

__all__ = ["BackgroundTasks"]

log = structlog.get_logger("anycast_announcer")


class BackgroundTasks:
    """Tasks spawned by one owner; a failure is logged as ``failed_event``."""

    def __init__(self, failed_event: str, level: Literal["warning", "error"] = "warning") -> None:
        self._failed_event = failed_event
        self._level = level
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the running loop, held until it is done."""
        name = str(getattr(work, "__qualname__", "background"))
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def cancel(self) -> None:
        """Cancel every task still running (their failures are no longer of interest)."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()

    def pending(self) -> tuple[asyncio.Task[None], ...]:
        """The tasks not done yet (to await them at shutdown)."""
        return tuple(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            getattr(log, self._level)(self._failed_event, task=task.get_name(), error=repr(error))
