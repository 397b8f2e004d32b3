"""Serving the app: a TCP listener (``host:port``, ``[v6]:port``) and/or a unix socket.

Every listener goes through one ``ConnectionGuard`` (at most ``http.max_connections``
connections, ``http.header_timeout`` seconds to send a request head, the same as the
keep-alive idle time), and the TCP listener answers only requests whose Host header
names this sidecar (``hostcheck``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware

from anycast_announcer.config import HttpConfig, parse_host_port
from anycast_announcer.http.app import create_app
from anycast_announcer.http.guard import ConnectionGuard, GuardedSite
from anycast_announcer.http.hostcheck import host_check_middleware
from anycast_announcer.http.token import TokenKeeper
from anycast_announcer.metrics import Metrics
from anycast_announcer.status import Control

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "parse_listen",
    "serving",
    "start_http",
]

SHUTDOWN_TIMEOUT = 1.0
"""Seconds open requests get at shutdown; the sidecar's whole exit budget is about two."""
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_HEADER_TIMEOUT = 5.0


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9179"`` or ``"[::1]:9179"`` as (host, port), port 0 allowed."""
    return parse_host_port(listen, allow_port_zero=True)


def _bind_unix(path: str) -> socket.socket:
    """A unix socket only we may connect to, bound at ``path``.

    The mode is set between bind and listen: until listen, nobody can connect, so there
    is no moment when the socket is open to others whatever the umask.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(f"{path} exists and is not a socket; refusing to replace it")
        os.unlink(path)  # left over from a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
    except BaseException:
        sock.close()
        raise
    return sock


async def start_http(
    app: web.Application,
    *,
    listen: str,
    unix_socket: str | None,
    guard: ConnectionGuard | None = None,
) -> web.AppRunner:
    """Start serving ``app``; stop with ``await runner.cleanup()``.

    ``listen`` ``""`` means no TCP listener; ``unix_socket`` adds one on that path (mode
    0600, removed again at cleanup). ``runner.addresses`` tells the bound addresses (port
    0 picks a free port). ``guard`` bounds connections; without one, a guard with the
    default limits is used (put ``guard.middleware`` into the app to let it see requests).
    """
    if guard is None:
        guard = ConnectionGuard(DEFAULT_MAX_CONNECTIONS, DEFAULT_HEADER_TIMEOUT)
    bound: list[tuple[int, int]] = []  # (device, inode) of the socket we created

    async def _remove_socket(_: web.Application) -> None:
        # Only the socket we bound: never a file that was there before, nor a successor's.
        if unix_socket is None or not bound:
            return
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(unix_socket)
            if (info.st_dev, info.st_ino) == bound[0]:
                os.unlink(unix_socket)

    app.on_cleanup.append(_remove_socket)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        # aiohttp's own knob: an idle keep-alive connection closes after this (its default
        # is an hour). The guard enforces the same bound on the first request too.
        keepalive_timeout=guard.header_timeout,
    )
    await runner.setup()
    try:
        if listen:
            host, port = parse_listen(listen)
            await GuardedSite(runner, guard, host=host, port=port).start()
        if unix_socket is not None:
            sock = _bind_unix(unix_socket)
            info = os.lstat(unix_socket)
            bound.append((info.st_dev, info.st_ino))
            await GuardedSite(runner, guard, sock=sock).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


@contextlib.asynccontextmanager
async def serving(
    control: Control, metrics: Metrics, config: HttpConfig, tokens: TokenKeeper | None = None
) -> AsyncIterator[web.AppRunner | None]:
    """The API as configured in ``http:``, for the sidecar's lifetime; None when disabled.

    Raises ``TokenFileError`` (unsafe or missing token file) or ``OSError`` (address in
    use, socket path taken) before serving anything: the sidecar should refuse to start.
    """
    if not config.listen and config.unix_socket is None:
        yield None
        return
    # The sidecar passes its keeper, so that a reload re-reads the token file.
    token = tokens if tokens is not None else TokenKeeper(config.token_file)
    guard = ConnectionGuard(config.max_connections, config.header_timeout)
    # The guard first, so that every request, even a refused one, counts as activity.
    middlewares: list[Middleware] = [guard.middleware]
    if config.listen:
        listen_host, _ = parse_listen(config.listen)
        middlewares.append(host_check_middleware(listen_host, config.allowed_hosts))
    app = create_app(
        control, metrics, token=token, max_body=config.max_body_bytes, middlewares=middlewares
    )
    runner = await start_http(
        app, listen=config.listen, unix_socket=config.unix_socket, guard=guard
    )
    try:
        yield runner
    finally:
        await runner.cleanup()
