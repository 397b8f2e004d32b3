"""Address watch: one rtnetlink socket tells when a watched address appears or goes.

Theory of operation: one NETLINK_ROUTE socket, subscribed to the link and the IPv4/IPv6
address groups, carries both the kernel's notifications and the answers to our own full
dumps (told apart by port id and sequence number). :meth:`AddressWatch.snapshot` dumps
links and addresses and rebuilds the view; notifications that arrive while a dump is
under way are held and applied on top of the dump's result, so a change made during the
dump is never lost. After each batch of messages the watch compares the presence of
every watched (interface, address) before and after and reports each difference as an
:class:`AddressEvent`; changes that do not alter presence (flags, lifetimes, other
addresses) report nothing. If the kernel drops notifications (ENOBUFS) the watch
resynchronises with a snapshot, and ``resync_interval`` adds a periodic one as a
backstop; a snapshot that finds a difference counts it in ``corrections``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import structlog

from anycast_announcer.events.netlink import (
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    Message,
    NetlinkFormatError,
    error_code,
    messages,
    open_socket,
    pack_request,
)
from anycast_announcer.events.rtnl import (
    RTM_GETADDR,
    RTM_GETLINK,
    RTMGRP_ADDRESSES,
    HostView,
    Interest,
    IPAddress,
    addr_dump_request,
    changes,
    link_dump_request,
)
from anycast_announcer.tasks import BackgroundTasks

__all__ = ["AddressCounters", "AddressEvent", "AddressWatch", "Interest"]

log = structlog.get_logger("anycast_announcer.events")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_RCVBUF = 1 << 20
_RECV_SIZE = 65536
_DUMP_RETRIES = 3


@dataclass(frozen=True, slots=True)
class AddressEvent:
    """A watched address appeared on (``present``) or left its interface."""

    interface: str
    address: IPAddress
    present: bool


@dataclass(frozen=True, slots=True)
class AddressCounters:
    """What the watch has seen since it was opened."""

    messages: int = 0
    """Notifications received (every address and link change in the namespace)."""
    events: int = 0
    """AddressEvents emitted, from notifications and snapshots."""
    snapshots: int = 0
    """Full dumps taken."""
    corrections: int = 0
    """AddressEvents that only a snapshot found (notifications missed or dropped)."""
    overruns: int = 0
    """Times the kernel dropped notifications (ENOBUFS); each forced a snapshot."""


class _Dump:
    """One dump under way on the shared socket: its sequence number and what came back."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.parts: list[Message] = []
        self.interrupted = False
        self.done: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()


class AddressWatch:
    """Reports :class:`AddressEvent` to ``on_change`` for the watched interest list.

    Use as ``async with AddressWatch(callback) as watch: watch.watch(interests)``; opening
    takes a first snapshot, so :meth:`present` answers at once. The callback runs on the
    event loop and must not block.
    """

    def __init__(
        self, on_change: Callable[[AddressEvent], None], resync_interval: float | None = None
    ) -> None:
        self._on_change = on_change
        self._resync_interval = resync_interval
        self._interests: frozenset[Interest] = frozenset()
        self._view = HostView()
        self._sock: socket.socket | None = None
        self._portid = 0
        self._seq = 0
        self._dump: _Dump | None = None
        self._held: list[Message] = []
        self._snapshot_lock = asyncio.Lock()
        self._tasks = BackgroundTasks("address_resync_failed")
        self._counts = {name: 0 for name in AddressCounters.__dataclass_fields__}

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:
        """Subscribe in the current network namespace and take the first snapshot."""
        if self._sock is not None:
            return
        sock = open_socket(socket.NETLINK_ROUTE, RTMGRP_ADDRESSES, rcvbuf=_RCVBUF)
        self._sock = sock
        self._portid = sock.getsockname()[0]
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        try:
            await self.snapshot(report=False)  # the baseline: nothing changed yet
        except BaseException:
            self.close()
            raise
        if self._resync_interval is not None:
            self._tasks.spawn(self._resync_forever(self._resync_interval))

    def close(self) -> None:
        """Stop reading, cancel background work and close the socket."""
        self._tasks.cancel()
        if self._dump is not None and not self._dump.done.done():
            self._dump.done.cancel()
        self._dump = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> AddressWatch:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- configuration and queries -------------------------------------------------------

    @property
    def interests(self) -> frozenset[Interest]:
        """The (interface, address) pairs watched now."""
        return self._interests

    @property
    def counters(self) -> AddressCounters:
        """A snapshot of the counters."""
        return AddressCounters(**self._counts)

    def watch(self, interests: Iterable[Interest]) -> None:
        """Report changes of exactly ``interests`` from now on (no event for the switch)."""
        self._interests = frozenset(interests)

    def present(self, interface: str, network: IPNetwork) -> bool:
        """Whether the network's address is on ``interface``, in the watch's current view.

        The same question ``localaddr.NetlinkAddresses.present`` asks the kernel, answered
        without a syscall: the view is kept current by notifications.
        """
        return self._view.present(interface, network.network_address)

    async def snapshot(self, *, report: bool = True) -> None:
        """Dump links and addresses, rebuild the view, report what changed (corrections).

        ``report=False`` only rebuilds the view (the first snapshot, a baseline).
        """
        async with self._snapshot_lock:
            links = await self._dump_retrying(RTM_GETLINK, link_dump_request())
            addresses = await self._dump_retrying(RTM_GETADDR, addr_dump_request())
            held, self._held = self._held, []
            before = self._view.states(self._interests)
            self._view = HostView.from_dumps(links, addresses)
            for message in held:
                self._view.apply(message)
            self._counts["snapshots"] += 1
            if report:
                self._counts["corrections"] += self._emit(before)

    # -- dumps on the shared socket ------------------------------------------------------

    async def _dump_retrying(self, kind: int, payload: bytes) -> list[Message]:
        for attempt in range(1, _DUMP_RETRIES + 1):
            try:
                return await self._request_dump(kind, payload)
            except InterruptedError:  # the table changed under the dump: ask again
                if attempt == _DUMP_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _request_dump(self, kind: int, payload: bytes) -> list[Message]:
        if self._sock is None:
            raise RuntimeError("AddressWatch is not open")
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        pending = self._dump = _Dump(self._seq)
        try:
            request = pack_request(kind, NLM_F_REQUEST | NLM_F_DUMP, pending.seq, payload)
            await asyncio.get_running_loop().sock_sendall(self._sock, request)
            return await pending.done
        finally:
            self._dump = None

    def _dump_reply(self, message: Message) -> bool:
        """Take ``message`` if it answers the dump under way; False for a notification."""
        pending = self._dump
        if pending is None or message.pid != self._portid or message.seq != pending.seq:
            return False
        if pending.done.done():
            return True
        pending.interrupted = pending.interrupted or bool(message.flags & NLM_F_DUMP_INTR)
        if message.type == NLMSG_DONE:
            if pending.interrupted:
                pending.done.set_exception(InterruptedError(errno.EINTR, "dump interrupted"))
            else:
                pending.done.set_result(pending.parts)
        elif message.type == NLMSG_ERROR:
            code = error_code(message)
            pending.done.set_exception(OSError(code, f"rtnetlink dump: {os.strerror(code)}"))
        else:
            pending.parts.append(message)
        return True

    # -- notifications -------------------------------------------------------------------

    def _readable(self) -> None:
        assert self._sock is not None
        before = self._view.states(self._interests)
        while True:
            try:
                data = self._sock.recv(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self._counts["overruns"] += 1
                log.warning("address_events_overrun")
                if self._dump is not None and not self._dump.done.done():
                    # Its answer may be among what was dropped: make it ask again.
                    self._dump.done.set_exception(InterruptedError(errno.ENOBUFS, "overrun"))
                self._tasks.spawn(self.snapshot())
                continue
            self._take(data)
        self._emit(before)

    def _take(self, data: bytes) -> None:
        try:
            for message in messages(data):
                if self._dump_reply(message):
                    continue
                self._counts["messages"] += 1
                if self._dump is not None:
                    self._held.append(message)  # applied on top of the dump's result
                self._view.apply(message)
        except NetlinkFormatError as exc:
            log.warning("address_event_unreadable", error=str(exc))
            self._tasks.spawn(self.snapshot())

    def _emit(self, before: dict[Interest, bool]) -> int:
        found = changes(before, self._view.states(self._interests))
        for interest, now in found:
            self._counts["events"] += 1
            # Debug: the core logs address_changed, with the prefix, once it applies it.
            log.debug(
                "address_event",
                interface=interest.interface,
                address=str(interest.address),
                present=now,
            )
            self._on_change(AddressEvent(interest.interface, interest.address, now))
        return len(found)

    # -- background work -----------------------------------------------------------------

    async def _resync_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.snapshot()
