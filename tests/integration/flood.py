"""Holds a flood of idle, half-sent HTTP connections against a server, as an attacker would.

    python -m tests.integration.flood HOST PORT COUNT SECONDS

Keeps COUNT connections open for SECONDS, each having sent the start of a request head
and nothing more; a connection the server closes is opened again (after 10 ms, so the
flood does not become a CPU benchmark). Prints one JSON line when it ends: how many
connections it opened in all and how many the server closed.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import sys
import time

HALF_REQUEST = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never-Ending: "


def _open(host: str, port: int, selector: selectors.BaseSelector) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    if sock.connect_ex((host, port)) not in (0, 115):  # 115: EINPROGRESS
        sock.close()
        return False
    selector.register(sock, selectors.EVENT_WRITE, "connecting")
    return True


def _handle(key: selectors.SelectorKey, selector: selectors.BaseSelector) -> bool:
    """True when the server closed this connection."""
    sock = key.fileobj
    assert isinstance(sock, socket.socket)
    if key.data == "connecting":
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            selector.unregister(sock)
            sock.close()
            return True
        with contextlib.suppress(OSError):  # a reset shows up as EOF on the next read
            sock.send(HALF_REQUEST)
        selector.modify(sock, selectors.EVENT_READ, "held")
        return False
    try:
        data = sock.recv(4096)
    except OSError:
        data = b""
    if data:
        return False  # an answer (a 4xx) before the close: keep reading
    selector.unregister(sock)
    sock.close()
    return True


def main() -> int:
    host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    selector = selectors.DefaultSelector()
    opened = closed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        while len(selector.get_map()) < count and _open(host, port, selector):
            opened += 1
        for key, _ in selector.select(timeout=0.01):
            closed += _handle(key, selector)
        time.sleep(0.01)
    print(json.dumps({"opened": opened, "closed_by_server": closed}), flush=True)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
