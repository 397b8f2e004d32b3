"""A tiny TCP service for labs: it tells each client which server answered.

On connect it sends ``NAME\\n``; afterwards it answers every line with ``NAME\\n`` again, so
a client holding a long-lived session can tell whether the session still reaches the same
server (a session rehashed to another server is reset by that server's kernel).

    python -m anycast_announcer.netlab.service --name srv1 --listen 10.255.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket


def _split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


async def _handle(name: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        writer.write(name)
        await writer.drain()
        while await reader.readline():
            writer.write(name)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def serve(name: str, listens: list[str]) -> None:
    """Serve until SIGTERM/SIGINT."""
    line = (name + "\n").encode()
    servers = []
    for listen in listens:
        host, port = _split_listen(listen)
        servers.append(
            await asyncio.start_server(
                lambda r, w: _handle(line, r, w),
                host,
                port,
                family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                reuse_address=True,
                backlog=4096,
            )
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="what to answer")
    parser.add_argument("--listen", action="append", required=True, help="host:port, repeatable")
    args = parser.parse_args()
    asyncio.run(serve(args.name, args.listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
