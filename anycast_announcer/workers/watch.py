"""Polling what has no event source: the drain file (a stat a second)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from anycast_announcer.config import Config
from anycast_announcer.core.inputs import DrainFileChanged
from anycast_announcer.workers import Submit

__all__ = ["POLL_INTERVAL", "DrainFileWatch"]

POLL_INTERVAL = 1.0


class DrainFileWatch:
    """Reports the drain file when it appears or disappears."""

    def __init__(self, submit: Submit, config: Callable[[], Config]) -> None:
        self._submit = submit
        self._config = config
        self._present: bool | None = None

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            self.poll()
            await asyncio.sleep(POLL_INTERVAL)

    def poll(self) -> None:
        """One look: report the file if it changed since the last one."""
        path = self._config().drain.drain_file
        present = path is not None and os.path.exists(path)
        if present != self._present:
            self._present = present
            self._submit(DrainFileChanged(present))
