"""Writing the drain state file off the event loop, newest state last."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from anycast_announcer.drainstate import PersistedDrain, save_drain_state

__all__ = ["DrainStateWriter"]

log = structlog.get_logger("anycast_announcer")


class DrainStateWriter:
    """Saves in a thread, one write at a time, always ending with the latest state.

    The file is fsynced (a drain must survive a power cut), which can take long enough
    to stall every probe if done on the loop. Drains change rarely; when several
    changes come while a write is under way, only the newest is written next.
    """

    def __init__(
        self, save: Callable[[str, Sequence[PersistedDrain]], None] = save_drain_state
    ) -> None:
        self._save = save
        """Writes the file (blocking, in a thread); tests put a fake here."""
        self._latest: tuple[str, Sequence[PersistedDrain]] | None = None
        self._task: asyncio.Task[None] | None = None

    def save(self, path: str, drains: Sequence[PersistedDrain]) -> None:
        """Persist ``drains`` (the whole set) to ``path`` soon."""
        self._latest = (path, tuple(drains))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write())

    async def flush(self) -> None:
        """Wait until the newest state is on disk."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _write(self) -> None:
        while self._latest is not None:
            path, drains = self._latest
            self._latest = None
            try:
                await asyncio.to_thread(self._save, path, drains)
            except OSError as error:
                log.error("drain_state_not_saved", path=path, error=str(error))
