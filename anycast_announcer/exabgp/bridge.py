"""The API process ExaBGP runs: relays lines between ExaBGP and the sidecar, and a dead-man switch.

ExaBGP starts its API processes itself, so the sidecar (ExaBGP's parent) cannot own their
pipes. This relay connects to the sidecar's private unix socket and copies both ways:
socket -> stdout (commands to ExaBGP), stdin -> socket (acks and events to the sidecar).

Dead-man switch (``--watchdog SECONDS``): the sidecar writes ``HEARTBEAT`` on the socket
every ``heartbeat_interval(watchdog)`` seconds. Any complete line from the sidecar resets
the deadline; heartbeats themselves are never passed to ExaBGP. When the deadline passes
(the sidecar is stopped, its event loop blocked, a syscall stuck), the relay says so on
stderr and ends ExaBGP. Without ``--watchdog`` (or with 0) there is no deadline.

Ending ExaBGP is done with SIGTERM to our parent, which is ExaBGP: measured with ExaBGP
5.0.15, ``exabgp.api.terminate`` does *not* stop ExaBGP when its API process exits (the
process is dropped from its table, and later writes to it fail with KeyError, not the
EPIPE that triggers termination), so established sessions would keep our last routes. On
SIGTERM ExaBGP sends a CEASE to every peer and exits, so the leaves drop our routes at
once. The same is done whenever the relay ends because the sidecar's side went away; the
parent is signalled only while it is still our parent (never a reparenting init).

The relay never wedges: every descriptor is non-blocking, at most ``BUFFER_MAX`` bytes are
queued toward either side (beyond that the other side is simply not read, which is what a
pipe would do), and a line longer than ``LINE_MAX`` is passed on in pieces instead of
being collected. The watchdog is checked on every wake-up, so a sidecar that stopped
reading cannot hold the relay in a blocking write. Standard library only, to start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence

__all__ = [
    "BUFFER_MAX",
    "HEARTBEAT",
    "LINE_MAX",
    "WATCHDOG_EXIT",
    "LineFilter",
    "bridge_argv",
    "heartbeat_interval",
    "main",
    "relay",
]

HEARTBEAT = b"#anycast-announcer-heartbeat\n"
"""The line the sidecar writes on the relay socket to say it is alive; never forwarded."""
LINE_MAX = 64 * 1024
"""Bytes of one line collected to see whether it is a heartbeat; longer lines stream on."""
BUFFER_MAX = 1024 * 1024
"""Bytes queued toward one side before the relay stops reading the other side."""
WATCHDOG_EXIT = 3
"""Exit status when the watchdog expired."""
_CHUNK = 65536
_PROGRAM = "anycast-announcer bridge"


def bridge_argv(socket_path: str, watchdog: float, python: str | None = None) -> list[str]:
    """The command line ExaBGP runs for us (the ``run`` line of exabgp.conf)."""
    argv = [python or sys.executable, "-m", "anycast_announcer.exabgp.bridge"]
    if watchdog > 0:
        argv += ["--watchdog", f"{watchdog:g}"]
    return [*argv, socket_path]


def heartbeat_interval(watchdog: float) -> float:
    """Seconds between two heartbeats for a watchdog of ``watchdog`` seconds.

    A third: two heartbeats may be lost to a pause of the sidecar before the relay acts.
    """
    return watchdog / 3


class LineFilter:
    """Cuts the sidecar's byte stream into lines and removes heartbeats (pure).

    Holds at most ``LINE_MAX`` bytes of an unfinished line: beyond that, the line cannot be
    a heartbeat, so what was collected is released and the rest of that line streams
    through as it arrives.
    """

    def __init__(self, line_max: int = LINE_MAX) -> None:
        if line_max < len(HEARTBEAT):
            raise ValueError(f"line_max must hold a heartbeat ({len(HEARTBEAT)} bytes)")
        self._line_max = line_max
        self._pending = bytearray()
        self._streaming = False

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the end of their line."""
        return len(self._pending)

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """(bytes to pass on to ExaBGP, number of lines that ended in ``data``)."""
        out = bytearray()
        lines = 0
        position = 0
        while position < len(data):
            end = data.find(b"\n", position)
            stop = len(data) if end < 0 else end + 1
            piece = data[position:stop]
            position = stop
            if self._streaming:
                out += piece
                self._streaming = end < 0
            else:
                self._pending += piece
                if end < 0:
                    self._release_if_long(out)
                    continue
                if self._pending != HEARTBEAT:
                    out += self._pending
                self._pending.clear()
            lines += end >= 0
        return bytes(out), lines

    def _release_if_long(self, out: bytearray) -> None:
        if len(self._pending) > self._line_max:
            out += self._pending
            self._pending.clear()
            self._streaming = True


class _Relay:
    """The loop: descriptors, queues, the deadline."""

    def __init__(self, sock: socket.socket, stdin_fd: int, stdout_fd: int, watchdog: float):
        self.sock = sock
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.watchdog = watchdog
        self.filter = LineFilter()
        self.to_exabgp = bytearray()
        self.to_sidecar = bytearray()
        self.deadline = time.monotonic() + watchdog if watchdog > 0 else None
        self.poller = select.poll()
        self.sidecar_gone = False
        self.exabgp_gone = False

    def run(self) -> int:
        while not (self.sidecar_gone or self.exabgp_gone):
            timeout = self._timeout()
            if timeout == 0:
                return self._expired()
            for fd, events in self.poller.poll(timeout):
                self._ready(fd, events)
        return 0

    def _timeout(self) -> int | None:
        """Milliseconds until the deadline (0 once it passed), None without a watchdog."""
        self._register()
        if self.deadline is None:
            return None
        return max(0, math.ceil((self.deadline - time.monotonic()) * 1000))

    def _register(self) -> None:
        wanted = {
            self.sock.fileno(): (select.POLLIN if len(self.to_exabgp) < BUFFER_MAX else 0)
            | (select.POLLOUT if self.to_sidecar else 0),
            self.stdin_fd: select.POLLIN if len(self.to_sidecar) < BUFFER_MAX else 0,
            self.stdout_fd: select.POLLOUT if self.to_exabgp else 0,
        }
        for fd, mask in wanted.items():
            if mask:
                self.poller.register(fd, mask)
            else:
                with contextlib.suppress(KeyError):
                    self.poller.unregister(fd)

    def _ready(self, fd: int, events: int) -> None:
        readable = events & (select.POLLIN | select.POLLHUP | select.POLLERR)
        if fd == self.sock.fileno():
            if readable and len(self.to_exabgp) < BUFFER_MAX:
                self._from_sidecar()
            if events & select.POLLOUT and self.to_sidecar:
                self._write_sidecar()
        elif fd == self.stdin_fd and readable:
            self._from_exabgp()
        elif fd == self.stdout_fd and events & (select.POLLOUT | select.POLLERR):
            self._write_exabgp()

    def _from_sidecar(self) -> None:
        try:
            data = self.sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sidecar_gone = True
            return
        forward, lines = self.filter.feed(data)
        if lines and self.deadline is not None:
            self.deadline = time.monotonic() + self.watchdog
        self.to_exabgp += forward

    def _from_exabgp(self) -> None:
        try:
            data = os.read(self.stdin_fd, _CHUNK)
        except BlockingIOError:
            return
        if not data:
            self.exabgp_gone = True
            return
        self.to_sidecar += data

    def _write_sidecar(self) -> None:
        try:
            sent = self.sock.send(self.to_sidecar)
        except BlockingIOError:
            return
        except OSError:
            self.sidecar_gone = True
            return
        del self.to_sidecar[:sent]

    def _write_exabgp(self) -> None:
        try:
            written = os.write(self.stdout_fd, self.to_exabgp)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno != errno.EINTR:
                self.exabgp_gone = True
            return
        del self.to_exabgp[:written]

    def _expired(self) -> int:
        _say(f"no heartbeat from the sidecar for {self.watchdog:g}s: stopping ExaBGP")
        return WATCHDOG_EXIT


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(f"{_PROGRAM}: {message}", file=sys.stderr, flush=True)


def _stop_parent(parent: int) -> None:
    """SIGTERM ExaBGP, our parent, if it still is (after its death we belong to init)."""
    if parent > 1 and os.getppid() == parent:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(parent, signal.SIGTERM)


def relay(socket_path: str, watchdog: float = 0.0) -> int:
    """Relay until one side closes or the watchdog expires; then stop ExaBGP (see above)."""
    parent = os.getppid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path)
    except OSError as exc:
        _say(f"cannot connect to {socket_path}: {exc}")
        sock.close()
        _stop_parent(parent)
        return 1
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    for fd in (sock.fileno(), stdin_fd, stdout_fd):
        os.set_blocking(fd, False)
    loop = _Relay(sock, stdin_fd, stdout_fd, watchdog)
    try:
        status = loop.run()
    finally:
        sock.close()
    if status == WATCHDOG_EXIT or loop.sidecar_gone:
        _stop_parent(parent)
    return status


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 3600")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m anycast_announcer.exabgp.bridge [--watchdog SECONDS] SOCKET``."""
    parser = argparse.ArgumentParser(
        prog="python -m anycast_announcer.exabgp.bridge",
        description="ExaBGP API process of anycast-announcer (started by ExaBGP).",
    )
    parser.add_argument(
        "--watchdog",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="stop ExaBGP when the sidecar sends no line for this long (0: never)",
    )
    parser.add_argument("socket", help="the sidecar's unix socket")
    args = parser.parse_args(argv)
    try:
        return relay(args.socket, args.watchdog)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
