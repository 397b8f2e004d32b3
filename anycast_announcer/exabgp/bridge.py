"""The API process ExaBGP runs: relays lines between ExaBGP and the sidecar's socket.

ExaBGP starts its API processes itself, so the sidecar (ExaBGP's parent) cannot own their
pipes. This relay connects to the sidecar's private unix socket and copies bytes both ways:
socket -> stdout (commands to ExaBGP), stdin -> socket (acks and events to the sidecar).
When either side closes, it exits, and ExaBGP (run with ``api.terminate``) stops with it.
Standard library only, to start fast.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

_CHUNK = 65536


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def relay(socket_path: str) -> int:
    """Copy bytes between the sidecar socket and stdin/stdout until one side closes."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        print(f"anycast-announcer bridge: cannot connect to {socket_path}: {exc}", file=sys.stderr)
        return 1
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ, "socket")
    selector.register(stdin_fd, selectors.EVENT_READ, "stdin")
    while True:
        for key, _ in selector.select():
            if key.data == "socket":
                data = sock.recv(_CHUNK)
                if not data:
                    return 0
                _write_all(stdout_fd, data)
            else:
                data = os.read(stdin_fd, _CHUNK)
                if not data:
                    return 0
                sock.sendall(data)


def main() -> int:
    """``python -m anycast_announcer.exabgp.bridge SOCKET``."""
    if len(sys.argv) != 2:
        print("usage: python -m anycast_announcer.exabgp.bridge SOCKET", file=sys.stderr)
        return 2
    try:
        return relay(sys.argv[1])
    except (BrokenPipeError, ConnectionResetError):
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
