"""Listener watch: a TCP service's listening socket is gone, known the moment it is freed.

Theory of operation: one NETLINK_SOCK_DIAG socket subscribed to the TCP destroy groups of
both families, with a classic BPF filter (see :mod:`.sockdiag`) so that the kernel passes
only listener-like sockets on the watched ports; connections opening and closing on the
port never wake this process. A second, unsubscribed netlink socket answers the
confirming dumps. On a destroy message the targets the socket could have served are
marked, and a confirmation task dumps the LISTEN sockets on their ports: a target no
listener serves any more is reported as :class:`ListenerGone` (counted *confirmed*), one
that is still served is counted *dismissed* (SO_REUSEPORT hand-over, a second listener,
a wildcard socket). Messages that arrive while a confirmation runs mark their targets
again, so no destroy goes unconfirmed. If the kernel drops messages (receive buffer
overrun, ENOBUFS) every target is confirmed again.

Everything runs on the running asyncio loop (``add_reader``; no threads). Both sockets
belong to the network namespace that is current when :meth:`ListenerWatch.open` runs.
A socket is freed when its last reference goes: the last fd closed (close, exit, SIGKILL)
in every process sharing it. A listener shut down without being freed (``ss -K``,
``shutdown(2)`` while the fd stays open) sends nothing: the probes still find that.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import structlog

from anycast_announcer.events.netlink import NetlinkFormatError, dump, messages, open_socket
from anycast_announcer.events.sockdiag import (
    NETLINK_SOCK_DIAG,
    SKNLGRP_INET6_TCP_DESTROY,
    SKNLGRP_INET_TCP_DESTROY,
    SOCK_DIAG_BY_FAMILY,
    DiagSocket,
    ListenTarget,
    destroy_filter,
    listen_request,
    pack_filter,
    parse_diag,
    relevant,
    serves,
)

__all__ = ["ListenTarget", "ListenerCounters", "ListenerGone", "ListenerWatch"]

log = structlog.get_logger("anycast_announcer.events")

_RCVBUF = 1 << 20  # room for a burst of destroyed listeners (about 400 bytes each)
_RECV_SIZE = 8192
_SO_ATTACH_FILTER = 26  # asm-generic/socket.h; the socket module does not export it
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_DUMP_RETRIES = 3


@dataclass(frozen=True, slots=True)
class ListenerGone:
    """No socket listens on ``target`` any more (confirmed by a dump after a destroy)."""

    target: ListenTarget


@dataclass(frozen=True, slots=True)
class ListenerCounters:
    """What the watch has seen since it was opened."""

    messages: int = 0
    """Destroy messages that passed the kernel filter and reached this process."""
    confirmed: int = 0
    """ListenerGone events emitted."""
    dismissed: int = 0
    """Targets checked after a destroy that another listener still served."""
    overruns: int = 0
    """Times the kernel dropped messages (ENOBUFS); each forced a check of every target."""
    errors: int = 0
    """Confirmations that failed (the dump was refused); no event was emitted for them."""


def _attach_filter(sock: socket.socket, ports: Iterable[int]) -> None:
    """Replace the socket's classic BPF program (SO_ATTACH_FILTER takes a sock_fprog)."""
    program = destroy_filter(ports)
    code = ctypes.create_string_buffer(pack_filter(program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))
    sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)


def _attach_what_fits(sock: socket.socket, ports: list[int]) -> int:
    """Attach a filter for as many of ``ports`` (sorted) as the kernel takes; how many.

    The kernel charges a socket filter to the socket's option memory, capped by
    ``net.core.optmem_max``: 20,480 bytes by default on Debian 12's Linux 6.1, which
    holds a filter for about 500 ports (measured here with that value); 131,072 bytes,
    per network namespace, on the 6.18 kernel of our test machine. A filter over the cap
    fails with ENOMEM; rather than give up the watch (the sidecar would not start), the
    lowest ports that fit are watched and the services on the others keep their probes.
    """
    try:
        _attach_filter(sock, ports)
        return len(ports)
    except OSError as error:
        if error.errno != errno.ENOMEM:
            raise
    # While a filter is attached, replacing it charges the new one on top of the old,
    # so every trial starts from the drop-everything program (a few instructions).
    fits, too_many = 0, len(ports)
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        _attach_filter(sock, ())
        try:
            _attach_filter(sock, ports[:middle])
        except OSError as error:
            if error.errno != errno.ENOMEM:
                raise
            too_many = middle
        else:
            fits = middle
    _attach_filter(sock, ())
    _attach_filter(sock, ports[:fits])
    return fits


class ListenerWatch:
    """Reports :class:`ListenerGone` to ``on_gone`` when a watched target loses its listener.

    Use as ``async with ListenerWatch(callback) as watch: watch.watch(targets)``. The
    callbacks run on the event loop; they must not block. ``on_dismissed`` hears of the
    destroys that another listener made harmless (a hand-over, a second listener).
    """

    def __init__(
        self,
        on_gone: Callable[[ListenerGone], None],
        on_dismissed: Callable[[ListenTarget], None] | None = None,
    ) -> None:
        self._on_gone = on_gone
        self._on_dismissed = on_dismissed
        self._targets: frozenset[ListenTarget] = frozenset()
        self._events: socket.socket | None = None
        self._query: socket.socket | None = None
        self._query_lock = asyncio.Lock()
        self._marked: set[ListenTarget] = set()
        self._confirming: asyncio.Task[None] | None = None
        self._counts = {name: 0 for name in ListenerCounters.__dataclass_fields__}

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Create both sockets in the current network namespace and start reading."""
        if self._events is not None:
            return
        events = open_socket(NETLINK_SOCK_DIAG, rcvbuf=_RCVBUF)
        try:
            # Filter first, subscribe second: no unfiltered message can slip in between.
            self._targets = self._filter(events, self._targets)
            events.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, SKNLGRP_INET_TCP_DESTROY)
            events.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, SKNLGRP_INET6_TCP_DESTROY)
            self._query = open_socket(NETLINK_SOCK_DIAG)
        except BaseException:
            events.close()
            raise
        self._events = events
        asyncio.get_running_loop().add_reader(events.fileno(), self._readable)

    def close(self) -> None:
        """Stop reading, cancel a running confirmation and close both sockets."""
        if self._events is not None:
            asyncio.get_running_loop().remove_reader(self._events.fileno())
            self._events.close()
            self._events = None
        if self._confirming is not None:
            self._confirming.cancel()
            self._confirming = None
        if self._query is not None:
            self._query.close()
            self._query = None

    async def __aenter__(self) -> ListenerWatch:
        self.open()
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
    def targets(self) -> frozenset[ListenTarget]:
        """The targets watched now."""
        return self._targets

    @property
    def counters(self) -> ListenerCounters:
        """A snapshot of the counters."""
        return ListenerCounters(**self._counts)

    def watch(self, targets: Iterable[ListenTarget]) -> None:
        """Watch exactly ``targets`` from now on; the kernel filter follows their ports."""
        new = frozenset(targets)
        if self._events is not None and {t.port for t in new} != {t.port for t in self._targets}:
            new = self._filter(self._events, new)
        self._targets = new
        self._marked &= new

    def _filter(
        self, sock: socket.socket, wanted: frozenset[ListenTarget]
    ) -> frozenset[ListenTarget]:
        """Attach the filter for ``wanted``; the targets it covers (all, unless it is too big)."""
        ports = sorted({t.port for t in wanted})
        fits = _attach_what_fits(sock, ports)
        if fits == len(ports):
            return wanted
        kept = set(ports[:fits])
        log.warning(
            "listener_watch_optmem_limited",
            ports_wanted=len(ports),
            ports_watched=fits,
            first_unwatched_port=ports[fits],
            hint="raise net.core.optmem_max to watch every port; the others rely on probes",
        )
        return frozenset(t for t in wanted if t.port in kept)

    async def listeners(self, port: int) -> list[DiagSocket]:
        """Every TCP socket in LISTEN on ``port`` (both families) in the watch's namespace."""
        found: list[DiagSocket] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            found += await self._dump_listeners(family, port)
        return found

    async def serving(self, target: ListenTarget) -> bool:
        """Whether any listening socket serves ``target`` now (one or two dumps)."""
        return any(serves(sock, target) for sock in await self.listeners(target.port))

    async def _dump_listeners(self, family: int, port: int) -> list[DiagSocket]:
        if self._query is None:
            raise RuntimeError("ListenerWatch is not open")
        request = listen_request(family, port)
        for attempt in range(1, _DUMP_RETRIES + 1):
            try:
                async with self._query_lock:
                    answer = await dump(self._query, SOCK_DIAG_BY_FAMILY, request)
                break
            except InterruptedError:  # the table changed under the dump: ask again
                if attempt == _DUMP_RETRIES:
                    raise
        return [parse_diag(m.payload) for m in answer if m.type == SOCK_DIAG_BY_FAMILY]

    # -- the event path ------------------------------------------------------------------

    def _readable(self) -> None:
        assert self._events is not None
        while True:
            try:
                data = self._events.recv(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # Destroy messages were lost: any target may have lost its listener.
                self._counts["overruns"] += 1
                log.warning("listener_events_overrun", targets=len(self._targets))
                self._marked |= self._targets
                continue
            self._take(data)
        if self._marked and self._confirming is None:
            self._confirming = asyncio.get_running_loop().create_task(self._confirm())

    def _take(self, data: bytes) -> None:
        try:
            for message in messages(data):
                if message.type != SOCK_DIAG_BY_FAMILY:
                    continue
                self._counts["messages"] += 1
                destroyed = parse_diag(message.payload)
                self._marked |= relevant(destroyed, self._targets)
        except NetlinkFormatError as exc:
            log.warning("listener_event_unreadable", error=str(exc))
            self._marked |= self._targets

    async def _confirm(self) -> None:
        try:
            while self._marked:
                batch, self._marked = self._marked, set()
                await self._confirm_batch(batch)
        finally:
            self._confirming = None

    async def _confirm_batch(self, batch: set[ListenTarget]) -> None:
        for port in sorted({t.port for t in batch}):
            try:
                found = await self.listeners(port)
            except Exception as exc:  # one port's failure must not drop the rest
                # OSError (InterruptedError after the retries), an answer that does not
                # parse, or a bug: the next ports are still confirmed, and the probes
                # still find a listener this one could not confirm.
                self._counts["errors"] += 1
                log.warning("listener_confirm_failed", port=port, error=repr(exc))
                continue
            for target in sorted((t for t in batch if t.port == port), key=str):
                self._decide(target, found)

    def _decide(self, target: ListenTarget, found: list[DiagSocket]) -> None:
        if target not in self._targets:
            return  # unwatched while the dump ran
        if any(serves(sock, target) for sock in found):
            self._counts["dismissed"] += 1
            log.debug("listener_event_dismissed", target=str(target), listeners=len(found))
            if self._on_dismissed is not None:
                self._on_dismissed(target)
            return
        self._counts["confirmed"] += 1
        log.info("listener_gone", target=str(target))
        self._on_gone(ListenerGone(target))
