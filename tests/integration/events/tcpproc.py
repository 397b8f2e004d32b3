"""A TCP service and a client load, run as processes inside the lab's namespaces.

    python -m tests.integration.events.tcpproc serve ADDRESS PORT [--reuseport] [--v6only] [--abort]
    python -m tests.integration.events.tcpproc churn ADDRESS PORT COUNT [--abort]

``serve`` listens, prints ``listening`` once it does, then accepts and closes every
connection (``--abort``: with SO_LINGER 0, an RST). On SIGTERM it closes the listener,
prints ``closed`` and exits 0: a graceful stop. ``churn`` opens COUNT connections one after
the other and closes each (``--abort``: with an RST), then prints ``done COUNT``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import struct
import sys
from types import FrameType

_LINGER_ZERO = struct.pack("ii", 1, 0)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET if ipaddress.ip_address(address).version == 4 else socket.AF_INET6


def serve(address: str, port: int, reuseport: bool, v6only: bool, abort: bool) -> int:
    """Listen until SIGTERM; accept and close whatever connects."""
    listener = socket.socket(_family(address), socket.SOCK_STREAM)
    # As servers do: TIME_WAIT sockets from an earlier run must not block the bind.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if listener.family == socket.AF_INET6:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    listener.bind((address, port))
    listener.listen(512)

    def stop(signum: int, frame: FrameType | None) -> None:
        listener.close()
        # Straight to the descriptor: the signal may land while print("listening") is
        # still inside stdout's buffered writer, and a print here would then be a
        # reentrant call (Python 3.13 raises RuntimeError; seen on Debian 13).
        os.write(sys.stdout.fileno(), b"closed\n")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("listening", flush=True)
    while True:
        connection, _ = listener.accept()
        if abort:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        connection.close()


def churn(address: str, port: int, count: int, abort: bool) -> int:
    """Open and close ``count`` connections, one at a time."""
    for _ in range(count):
        try:
            with socket.create_connection((address, port), timeout=5) as connection:
                if abort:
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except ConnectionResetError:
            pass  # an aborting server's RST may beat our connect() to the finish: fine

    print(f"done {count}", flush=True)
    return 0


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="verb", required=True)
    serve_args = verbs.add_parser("serve")
    churn_args = verbs.add_parser("churn")
    for sub in (serve_args, churn_args):
        sub.add_argument("address")
        sub.add_argument("port", type=int)
    churn_args.add_argument("count", type=int)
    serve_args.add_argument("--reuseport", action="store_true")
    serve_args.add_argument("--v6only", action="store_true")
    for sub in (serve_args, churn_args):
        sub.add_argument("--abort", action="store_true")
    args = parser.parse_args()
    if args.verb == "serve":
        return serve(args.address, args.port, args.reuseport, args.v6only, args.abort)
    return churn(args.address, args.port, args.count, args.abort)


if __name__ == "__main__":
    raise SystemExit(main())
