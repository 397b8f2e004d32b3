"""The processes the event-source benchmark runs inside its lab (see tests/benchmarks/events.py).

    python -m tests.benchmarks.events_agent watch ADDRESS PORT [--unfiltered]
    python -m tests.benchmarks.events_agent load ADDRESS PORT RATE SECONDS

``watch`` opens a ListenerWatch on ADDRESS:PORT and an AddressWatch on ADDRESS on lo in
its own namespace and prints one JSON line per event, stamped with CLOCK_MONOTONIC (one
clock for every process on the host); a line ``counters`` on stdin prints the counters,
end of input stops it. ``--unfiltered`` replaces the listener watch by what it would
cost without the kernel filter: a plain subscriber that decodes every destroy message and
looks for the targets it concerns. ``load`` opens and closes RATE connections a second
for SECONDS, paced, each waiting for the server's FIN so the client keeps no TIME_WAIT.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import socket
import sys
import time
from typing import Any

import structlog

from anycast_announcer.events.addresses import AddressEvent, AddressWatch
from anycast_announcer.events.listeners import ListenerGone, ListenerWatch
from anycast_announcer.events.netlink import messages, open_socket
from anycast_announcer.events.rtnl import Interest
from anycast_announcer.events.sockdiag import (
    NETLINK_SOCK_DIAG,
    SKNLGRP_INET6_TCP_DESTROY,
    SKNLGRP_INET_TCP_DESTROY,
    ListenTarget,
    parse_diag,
    relevant,
)


def emit(**fields: Any) -> None:
    """One JSON line on stdout."""
    print(json.dumps(fields), flush=True)


class Unfiltered:
    """The Python work per destroy message that the kernel filter saves: decode, match."""

    def __init__(self, target: ListenTarget) -> None:
        groups = (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1))
        self.sock = open_socket(NETLINK_SOCK_DIAG, groups, rcvbuf=1 << 20)
        self.targets = [target]
        self.messages = 0
        self.matched = 0
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self.readable)

    def readable(self) -> None:
        """Drain the socket, decoding each message as the watch would."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            for message in messages(data):
                self.messages += 1
                self.matched += len(relevant(parse_diag(message.payload), self.targets))


async def watch(address: str, port: int, unfiltered: bool) -> int:
    """Run the watches until stdin closes."""
    loop = asyncio.get_running_loop()
    target = ListenTarget(ipaddress.ip_address(address), port)

    def gone(event: ListenerGone) -> None:
        emit(kind="listener_gone", target=str(event.target), t=time.monotonic())

    def changed(event: AddressEvent) -> None:
        emit(kind="address", address=str(event.address), present=event.present, t=time.monotonic())

    stop = asyncio.Event()
    async with ListenerWatch(gone) as listeners, AddressWatch(changed) as addresses:
        addresses.watch([Interest("lo", target.address)])
        raw = Unfiltered(target) if unfiltered else None
        if raw is None:
            listeners.watch([target])

        def command() -> None:
            line = sys.stdin.readline()
            if not line:
                stop.set()
            elif raw is not None:
                emit(kind="counters", messages=raw.messages, matched=raw.matched)
            else:
                counters = listeners.counters
                emit(
                    kind="counters",
                    messages=counters.messages,
                    confirmed=counters.confirmed,
                    dismissed=counters.dismissed,
                    overruns=counters.overruns,
                )

        loop.add_reader(sys.stdin.fileno(), command)
        emit(kind="ready")
        await stop.wait()
    return 0


def load(address: str, port: int, rate: float, seconds: float) -> int:
    """Paced connections; prints how many were made and in how long."""
    total = int(rate * seconds)
    made = failed = 0
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            with socket.create_connection((address, port), timeout=2) as connection:
                connection.recv(1)  # the server closes first: no TIME_WAIT on this side
            made += 1
        except OSError:
            failed += 1
    emit(kind="load", connections=made, failed=failed, seconds=time.monotonic() - start)
    return 0


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="verb", required=True)
    watch_args = verbs.add_parser("watch")
    load_args = verbs.add_parser("load")
    for sub in (watch_args, load_args):
        sub.add_argument("address")
        sub.add_argument("port", type=int)
    watch_args.add_argument("--unfiltered", action="store_true")
    load_args.add_argument("rate", type=float)
    load_args.add_argument("seconds", type=float)
    args = parser.parse_args()
    # stdout carries the JSON lines; the watchers' own logs go to stderr, warnings only.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    if args.verb == "watch":
        return asyncio.run(watch(args.address, args.port, args.unfiltered))
    return load(args.address, args.port, args.rate, args.seconds)


if __name__ == "__main__":
    raise SystemExit(main())
