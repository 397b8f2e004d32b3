"""A tiny TCP service for labs: it tells each client which server answered.

On connect it sends ``NAME\\n``; afterwards it answers every line with ``NAME\\n`` again, so
a client holding a long-lived session can tell whether the session still reaches the same
server (a session rehashed to another server is reset by that server's kernel).

A line ``bulk N`` is answered with ``NAME\\n`` followed by N bytes (at most 1 GiB): a large
download, which needs full-size packets to reach the client (path MTU discovery).

    python -m anycast_announcer.netlab.service --name srv1 --listen 10.255.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path


def _split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


_BULK_MAX = 1 << 30
_CHUNK = b"x" * 65536


async def _send_bulk(writer: asyncio.StreamWriter, line: bytes) -> None:
    """Send the N bytes a ``bulk N`` line asks for (nothing for a malformed N)."""
    try:
        left = min(int(line.split()[1]), _BULK_MAX)
    except (IndexError, ValueError):
        return
    while left > 0:
        writer.write(_CHUNK[: min(left, len(_CHUNK))])
        left -= len(_CHUNK)
        await writer.drain()


class _Sessions:
    """Open client sessions, so they can be shed or closed together."""

    def __init__(self, name: str) -> None:
        self.line = (name + "\n").encode()
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            writer.write(self.line)
            await writer.drain()
            while line := await reader.readline():
                if writer.is_closing():
                    break
                writer.write(self.line)
                if line.startswith(b"bulk "):
                    await _send_bulk(writer, line)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def shed(self) -> None:
        """Say goodbye on every open session and close it cleanly (FIN, not RST)."""
        for writer in list(self.writers):
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                writer.write(b"BYE\n")
                writer.close()


async def serve(name: str, listens: list[str], pidfile: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT; SIGUSR1 sheds the open sessions."""
    sessions = _Sessions(name)
    servers = []
    for listen in listens:
        host, port = _split_listen(listen)
        servers.append(
            await asyncio.start_server(
                sessions.handle,
                host,
                port,
                family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                reuse_address=True,
                backlog=4096,
            )
        )
    if pidfile:
        # Once, before serving: a blocking write here delays nobody.
        Path(pidfile).write_text(f"{os.getpid()}\n", encoding="utf-8")  # noqa: ASYNC240
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, sessions.shed)
    await stop.wait()
    for server in servers:
        server.close()
    # Close the sessions ourselves so their handlers end quietly instead of being
    # cancelled by asyncio.run (which printed a traceback per open session).
    for writer in list(sessions.writers):
        if writer.transport.get_write_buffer_size():
            # A download stuck behind a zero window would keep close() waiting forever.
            writer.transport.abort()
        else:
            writer.close()
    await asyncio.sleep(0)


def command(name: str, *listens: str) -> list[str]:
    """The command line that runs this service in a lab node, answering ``name`` on each
    of ``listens`` (``host:port``, ``[v6]:port``)."""
    line = [sys.executable, "-m", "anycast_announcer.netlab.service", "--name", name]
    for listen in listens:
        line += ["--listen", listen]
    return line


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="what to answer")
    parser.add_argument("--listen", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--pidfile", help="write our pid here (for drain hooks)")
    args = parser.parse_args()
    asyncio.run(serve(args.name, args.listen, args.pidfile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
