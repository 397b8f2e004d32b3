"""Polling what has no event source yet: anycast addresses on their interfaces, the drain file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from anycast_announcer.config import Config
from anycast_announcer.core.inputs import AddressChanged, DrainFileChanged, IPAddress
from anycast_announcer.localaddr import AddressBook
from anycast_announcer.workers import Submit

__all__ = ["POLL_INTERVAL", "Watcher"]

POLL_INTERVAL = 1.0


class Watcher:
    """Reports each configured address and the drain file when they change."""

    def __init__(
        self, addresses: AddressBook, submit: Submit, config: Callable[[], Config]
    ) -> None:
        self._addresses = addresses
        self._submit = submit
        self._config = config
        self._present: dict[tuple[str, IPAddress], bool] = {}
        self._drain_file: bool | None = None

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll()
            await asyncio.sleep(POLL_INTERVAL)

    async def poll(self) -> None:
        """One round: report what changed since the last one."""
        config = self._config()
        for prefix in config.prefixes:
            key = (prefix.interface, prefix.prefix.network_address)
            present = await self._addresses.present(prefix.interface, prefix.prefix)
            if self._present.get(key) != present:
                self._present[key] = present
                self._submit(AddressChanged(key[0], key[1], present))
        path = config.drain.drain_file
        # A stat on a local path: cheap enough for the loop, once a second.
        present = path is not None and os.path.exists(path)  # noqa: ASYNC240
        if present != self._drain_file:
            self._drain_file = present
            self._submit(DrainFileChanged(present))
