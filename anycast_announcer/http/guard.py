"""Bounds on the API's connections, so no local client can use up the sidecar's descriptors.

A few hundred half-sent requests once took every file descriptor: the next probe's
``socket()`` failed, the service was marked down and its route withdrawn. aiohttp has no
cap on connections, and (before 3.14) no time limit for a client that connects and never
finishes its request head. ``ConnectionGuard`` adds both, in front of aiohttp's own
protocol, for every listener of the API:

- **Cap.** At most ``limit`` connections are open. A new one beyond that closes the
  oldest *idle* connection (no request being handled) to make room, so a flood of idle
  sockets cannot lock out the operator: the newest connection is the one most likely
  to be a real client that sends its request at once. Only when every connection is
  busy is the new one closed.
- **Deadline.** A connection must start a request within ``header_timeout`` seconds of
  being accepted, or of its previous response (keep-alive), or it is closed. "Started"
  means aiohttp parsed the whole request head and called the app, which
  ``ConnectionGuard.middleware`` notes.

The guard wraps the protocol factory given to ``loop.create_server`` (``GuardedSite``);
aiohttp's handler sees the real transport and nothing else changes for it.

The listen backlog is small (``accept_backlog``) on purpose: asyncio accepts up to
``backlog`` connections in one go, and they hold descriptors before the guard sees them
(a flood of 1,000 against a sidecar limited to 256 descriptors still ran out with the
default of 128, and asyncio then stops accepting for a second). With a small backlog the
descriptors in use stay below about ``limit + 3 * accept_backlog`` whatever the flood; a
client arriving during a flood may wait for a SYN retransmission, never for a descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["ConnectionGuard", "GuardedSite"]


@dataclass(eq=False)
class _Connection:
    transport: asyncio.BaseTransport
    active: int = 0
    closing: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class ConnectionGuard:
    """Caps the number of connections and the time to send a request head (see above)."""

    def __init__(self, limit: int, header_timeout: float) -> None:
        if limit < 1 or header_timeout <= 0:
            raise ValueError("limit and header_timeout must be positive")
        self.limit = limit
        self.header_timeout = header_timeout
        self.accept_backlog = max(4, min(limit // 4, 32))
        """Listen backlog, which is also how many connections asyncio accepts at once."""
        self._connections: dict[asyncio.BaseTransport, _Connection] = {}
        self.evicted = 0
        """Idle connections closed to admit a newer one (for tests and curious operators)."""
        self.timed_out = 0
        """Connections closed because no request started in time."""

    @property
    def open_connections(self) -> int:
        """Connections counted against the limit (closing ones are not)."""
        return sum(not connection.closing for connection in self._connections.values())

    def wrap(self, factory: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``create_server`` that puts ``factory``'s protocols behind us."""
        return lambda: _GuardedProtocol(self, factory())

    # -- called by the protocol ---------------------------------------------------------

    def _admit(self, transport: asyncio.BaseTransport) -> bool:
        if self.open_connections >= self.limit and not self._evict_oldest_idle():
            return False
        connection = _Connection(transport)
        self._connections[transport] = connection
        self._arm(connection)
        return True

    def _forget(self, transport: asyncio.BaseTransport) -> None:
        connection = self._connections.pop(transport, None)
        if connection is not None and connection.timer is not None:
            connection.timer.cancel()

    def _evict_oldest_idle(self) -> bool:
        # Dicts keep insertion order: the first idle one is the oldest.
        for connection in self._connections.values():
            if not connection.closing and connection.active == 0:
                self.evicted += 1
                self._close(connection)
                return True
        return False

    def _arm(self, connection: _Connection) -> None:
        if connection.timer is not None:
            connection.timer.cancel()
        loop = asyncio.get_running_loop()
        connection.timer = loop.call_later(self.header_timeout, self._expire, connection)

    def _expire(self, connection: _Connection) -> None:
        connection.timer = None
        if connection.active == 0 and not connection.closing:
            self.timed_out += 1
            self._close(connection)

    def _close(self, connection: _Connection) -> None:
        connection.closing = True
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        # abort, not close: a half-sent request has nothing to flush, and the descriptor
        # must be free now, not after a lingering close.
        with contextlib.suppress(Exception):
            connection.transport.abort()  # type: ignore[attr-defined]

    # -- called by the app --------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks the request's connection busy while the app handles it."""
        connection = self._connections.get(request.transport) if request.transport else None
        if connection is None:
            return await handler(request)
        connection.active += 1
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        try:
            return await handler(request)
        finally:
            connection.active -= 1
            if connection.active == 0 and not connection.closing:
                self._arm(connection)  # the keep-alive wait for the next request


class _GuardedProtocol(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol once the guard admitted the connection."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.BaseProtocol) -> None:
        self._guard = guard
        self._inner: Any = inner
        self._transport: asyncio.BaseTransport | None = None
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._guard._admit(transport):
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._guard._forget(self._transport)
        if self._admitted:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._admitted:
            return bool(self._inner.eof_received())
        return None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """A listener for an AppRunner whose connections go through a ``ConnectionGuard``.

    Listens on ``host``/``port`` (as ``web.TCPSite``) or on an already bound ``sock``.
    """

    __slots__ = ("_guard", "_host", "_port", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        guard: ConnectionGuard,
        *,
        host: str | None = None,
        port: int | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        if (sock is None) == (port is None):
            raise ValueError("give either host and port, or sock")
        super().__init__(runner, backlog=guard.accept_backlog)
        self._guard = guard
        self._host = host
        self._port = port
        self._sock = sock

    @property
    def name(self) -> str:
        """How aiohttp names a site in its logs."""
        if self._sock is not None:
            return f"sock:{self._sock.getsockname()!r}"
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        """Listen; the runner's server builds the protocols, the guard wraps them."""
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None  # BaseSite refuses a runner that was not set up
        factory = self._guard.wrap(server)
        if self._sock is not None:
            self._server = await loop.create_server(factory, sock=self._sock, backlog=self._backlog)
        else:
            assert self._port is not None  # __init__ insists on sock or port
            self._server = await loop.create_server(
                factory, self._host, self._port, backlog=self._backlog
            )
