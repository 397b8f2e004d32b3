"""TCP probe: healthy when a connection to host:port is accepted.

The probe connects and closes at once, writing nothing. It drives its own non-blocking
socket instead of ``asyncio.open_connection`` so that the socket is closed synchronously on
every path (success, refusal, timeout, cancellation): a sidecar probing hundreds of services
every second must not let file descriptors wait for a later loop iteration.
"""

from __future__ import annotations

import asyncio
import socket
import time

from anycast_announcer.checks._result import (
    ProbeResult,
    finish,
    os_error_reason,
    shorten,
    timeout_reason,
)
from anycast_announcer.config import TcpCheck

__all__ = ["probe"]


async def probe(check: TcpCheck, timeout: float) -> ProbeResult:
    """Connect to ``check.host:check.port`` within ``timeout`` seconds, then hang up."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout) as deadline:
            return await _connect_any(check.host, check.port, started)
    except TimeoutError:
        if deadline.expired():
            return finish(started, ok=False, reason=timeout_reason(timeout))
        raise  # not ours; _connect_any turns every OSError into a result


async def _connect_any(host: str, port: int, started: float) -> ProbeResult:
    loop = asyncio.get_running_loop()
    try:
        addresses = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return finish(started, ok=False, reason=f"cannot resolve {host}: {_gai_text(error)}")
    # A name may resolve to several addresses (IPv6 and IPv4): one that answers is enough,
    # and when none does, the last failure is the one reported.
    reason = f"cannot resolve {host}: no addresses"
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as error:
            reason = os_error_reason(error)
            continue
        finally:
            sock.close()
        return finish(started, ok=True, reason="connected")
    return finish(started, ok=False, reason=reason)


def _gai_text(error: socket.gaierror) -> str:
    return shorten((error.strerror or str(error)).lower())
