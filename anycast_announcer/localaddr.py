"""Local addresses over netlink: is the anycast address on its interface, and managing it.

A server that announces an address it does not hold black-holes the traffic the fabric
sends it, so the policy asks this module before every announcement.
"""

from __future__ import annotations

import errno
import ipaddress
from types import TracebackType
from typing import Any, Protocol

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

__all__ = ["AddressBook", "AddressError", "IPNetwork", "NetlinkAddresses"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressError(Exception):
    """A netlink address operation failed (the message names address and interface)."""


class AddressBook(Protocol):
    """The seam the supervisor uses: which addresses are on which interfaces."""

    async def present(self, interface: str, network: IPNetwork) -> bool:
        """Whether the network's address is configured on ``interface``."""

    async def add(self, interface: str, network: IPNetwork) -> None:
        """Configure the address (host length) on ``interface``."""

    async def remove(self, interface: str, network: IPNetwork) -> None:
        """Remove the address from ``interface``; absent is fine."""


class NetlinkAddresses:
    """AddressBook on one rtnetlink socket (pyroute2's asyncio API)."""

    def __init__(self) -> None:
        self._ipr: Any = AsyncIPRoute()

    async def __aenter__(self) -> NetlinkAddresses:
        await self._ipr.setup_endpoint()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._ipr.close()

    async def _index(self, interface: str) -> int | None:
        found = await self._ipr.link_lookup(ifname=interface)
        return int(found[0]) if found else None

    async def present(self, interface: str, network: IPNetwork) -> bool:
        index = await self._index(interface)
        if index is None:
            return False
        wanted = network.network_address
        family = 2 if network.version == 4 else 10
        found = False
        async for message in await self._ipr.get_addr(index=index, family=family):
            address = message.get_attr("IFA_ADDRESS")
            if address is not None and ipaddress.ip_address(address) == wanted:
                found = True
        return found

    async def add(self, interface: str, network: IPNetwork) -> None:
        index = await self._index(interface)
        if index is None:
            raise AddressError(f"cannot add {network}: interface {interface} does not exist")
        try:
            await self._ipr.addr(
                "add",
                index=index,
                address=str(network.network_address),
                prefixlen=network.max_prefixlen,
            )
        except NetlinkError as exc:
            if exc.code == errno.EPERM:
                raise AddressError(
                    f"cannot add {network} to {interface}: operation not permitted; "
                    "manage_address needs CAP_NET_ADMIN (or configure the address "
                    "yourself and set manage_address: false)"
                ) from None
            if exc.code != errno.EEXIST:  # configured by someone else already: fine
                raise AddressError(f"cannot add {network} to {interface}: {exc}") from None

    async def remove(self, interface: str, network: IPNetwork) -> None:
        index = await self._index(interface)
        if index is None:
            return
        try:
            await self._ipr.addr(
                "del",
                index=index,
                address=str(network.network_address),
                prefixlen=network.max_prefixlen,
            )
        except NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):  # already gone
                raise AddressError(f"cannot remove {network} from {interface}: {exc}") from None
