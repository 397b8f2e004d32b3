"""Tell at once when someone changes the rescue tables: nftables' netlink notifications.

Every committed nftables change is announced by the kernel to the ``NFNLGRP_NFTABLES``
multicast group of ``NETLINK_NETFILTER``: one message per table, chain, rule, set or
object added or deleted, each naming its table. ``flush ruleset`` (the first line of
Debian's ``/etc/nftables.conf``, and of most rulesets written by configuration
management) deletes our tables with everything else, and announces it the same way.

:func:`rescue_changes` reads one datagram of such messages (pure), and
:class:`NftablesWatch` is the socket: ``changed()`` returns when a datagram naming the
``anycast_rescue`` table arrives, or when the socket overflowed (some change may have been
lost, so the caller must look). It says which families' tables were deleted outright
(``flush ruleset``): those can be written back at once, without reading anything first.
That includes the flow directory's ``netdev`` table, which ``flush ruleset`` deletes
too, and which can also be deleted alone (``flush ruleset netdev``).
Elements added from the packet path (``add @probation``, ``update @owner_*``) are not
announced by the kernel, so a busy data path does not wake the watcher; element messages
are ignored anyway.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from dataclasses import dataclass

from anycast_announcer.rescue.model import TABLE

__all__ = [
    "NETLINK_NETFILTER",
    "NFNLGRP_NFTABLES",
    "Change",
    "NftablesWatch",
    "concerns_rescue",
    "rescue_changes",
]

NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_NFNL_SUBSYS_NFTABLES = 10
_NLMSG_HEADER = struct.Struct("=IHHII")
_NFGENMSG_SIZE = 4
_ATTRIBUTE = struct.Struct("=HH")
# NFT_MSG_* types that change the ruleset (libnftnl's nf_tables.h): tables, chains,
# rules, sets and stateful objects, added, deleted or destroyed. Elements (12, 14) are
# left out: only the packet path and a reconcile change those.
_CHANGES = frozenset({0, 2, 3, 5, 6, 8, 9, 11, 18, 20, 26, 27, 28, 29, 31})
_TABLE_ATTRIBUTE = 1  # NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE...
_NAME = TABLE.encode() + b"\0"
_NEWTABLE = 0
_DELTABLE = 2
# NFPROTO_IPV4, NFPROTO_IPV6, NFPROTO_NETDEV (the flow directory's egress table).
_FAMILIES = {2: "ip", 10: "ip6", 5: "netdev"}


@dataclass(frozen=True, slots=True)
class Change:
    """What one wake-up saw: our tables changed; ``deleted``: families ("ip", "ip6",
    "netdev") whose table was deleted outright."""

    deleted: frozenset[str] = frozenset()


def _align(length: int) -> int:
    return (length + 3) & ~3


def _names_table(payload: bytes) -> bool:
    offset = _NFGENMSG_SIZE
    while offset + _ATTRIBUTE.size <= len(payload):
        length, kind = _ATTRIBUTE.unpack_from(payload, offset)
        if length < _ATTRIBUTE.size:
            return False
        if kind & 0x3FFF == _TABLE_ATTRIBUTE:
            return payload[offset + _ATTRIBUTE.size : offset + length] == _NAME
        offset += _align(length)
    return False


def rescue_changes(datagram: bytes, deleted: set[str] | None = None) -> Change | None:
    """The changes to ``anycast_rescue`` tables one netlink datagram announces; None if
    it announces none (a malformed tail is ignored).

    ``deleted`` carries the families deleted by earlier datagrams, in order: a table
    deleted and then created again (our own whole-table replacement) is not deleted.
    """
    offset, seen = 0, False
    deleted = set() if deleted is None else deleted
    while offset + _NLMSG_HEADER.size <= len(datagram):
        length, kind, _, _, _ = _NLMSG_HEADER.unpack_from(datagram, offset)
        if length < _NLMSG_HEADER.size or offset + length > len(datagram):
            break
        subsystem, message = kind >> 8, kind & 0xFF
        if subsystem == _NFNL_SUBSYS_NFTABLES and message in _CHANGES:
            payload = datagram[offset + _NLMSG_HEADER.size : offset + length]
            if _names_table(payload):
                seen = True
                family = _FAMILIES.get(payload[0]) if payload else None
                if family is not None and message == _DELTABLE:
                    deleted.add(family)
                elif family is not None and message == _NEWTABLE:
                    deleted.discard(family)
        offset += _align(length)
    return Change(frozenset(deleted)) if seen else None


def concerns_rescue(datagram: bytes) -> bool:
    """Whether one netlink datagram announces a change to an ``anycast_rescue`` table."""
    return rescue_changes(datagram) is not None


class NftablesWatch:
    """A netlink socket subscribed to nftables changes (this network namespace)."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None

    def open(self) -> None:
        """Subscribe; OSError when the kernel or our privileges do not allow it."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
            sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._socket = sock

    async def changed(self) -> Change:
        """Return once the rescue tables were changed (then drain what else is queued)."""
        sock = self._socket
        if sock is None:
            raise RuntimeError("NftablesWatch.changed() before open()")
        loop = asyncio.get_running_loop()
        while True:
            change = self._receive(await self._readable(loop, sock))
            if change is not None:
                return change

    @staticmethod
    async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes | None:
        try:
            return await loop.sock_recv(sock, 1 << 16)
        except OSError as error:
            if error.errno == errno.ENOBUFS:  # overflowed: something may have been lost
                return None
            raise

    def _receive(self, first: bytes | None) -> Change | None:
        assert self._socket is not None
        deleted: set[str] = set()
        # None: the socket overflowed; something changed, but what is not known.
        seen = first is None or rescue_changes(first, deleted) is not None
        while True:  # one change is many messages: read them all, report once
            try:
                more = self._socket.recv(1 << 16)
            except BlockingIOError:
                return Change(frozenset(deleted)) if seen else None
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                seen = True
                continue
            seen = rescue_changes(more, deleted) is not None or seen

    def close(self) -> None:
        """Unsubscribe."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
