"""Anycast addresses the sidecar manages itself (``manage_address: true``)."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from anycast_announcer.config import PrefixConfig
from anycast_announcer.localaddr import AddressBook, AddressError

__all__ = ["ManagedAddresses"]

log = structlog.get_logger("anycast_announcer")


class ManagedAddresses:
    """Adds missing managed addresses at start; removes exactly those at the end."""

    def __init__(self, book: AddressBook) -> None:
        self._book = book
        self._added: list[PrefixConfig] = []

    async def add(self, prefixes: Iterable[PrefixConfig]) -> None:
        """Add every managed address that is not there yet (raises AddressError; what
        was added before the error is remembered, so ``remove_added`` removes it)."""
        for prefix in prefixes:
            if prefix.manage_address and not await self._book.present(
                prefix.interface, prefix.prefix
            ):
                await self._book.add(prefix.interface, prefix.prefix)
                self._added.append(prefix)
                log.info("address_added", prefix=str(prefix.prefix), interface=prefix.interface)

    async def remove_added(self) -> None:
        """Remove what ``add`` added (call only after the withdrawal was acknowledged)."""
        for prefix in self._added:
            try:
                await self._book.remove(prefix.interface, prefix.prefix)
            except AddressError as error:
                log.error("address_remove_failed", prefix=str(prefix.prefix), error=str(error))
            else:
                log.info("address_removed", prefix=str(prefix.prefix), interface=prefix.interface)
        self._added.clear()
