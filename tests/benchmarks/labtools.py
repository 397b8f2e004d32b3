"""Processes the benchmarks start inside lab nodes: a service and a long-lived-session client.

    python -m tests.benchmarks.labtools serve --name srv1 --listen 10.255.0.1:8080 \\
        [--listen [fd00:255::1]:8080] \\
        [--probe-host 10.255.0.1 --probe-ports 20000:500 --record /tmp/arrivals.json]

serves the session protocol on every ``--listen`` address (greets with ``NAME``, answers
each line with ``NAME``; on SIGUSR1 it *drains*: says ``BYE`` on every session and closes
it with a FIN, which stands in for the drain hook asking the application to close
long-lived sessions; on SIGUSR2 it aborts every session),
and, on every ``--probe-ports`` port, accepts health-check connections, notes the arrival
time (``time.time()``) per port and closes them. The arrival times are written to
``--record`` as JSON on SIGTERM.

    python -m tests.benchmarks.labtools hold --target 10.255.0.1:8080 --sessions 400 \\
        --ready-file R --result-file F

opens the sessions, writes ``R`` once all are open, then sends a line on each every
``--interval`` seconds. A session is *broken* when it is reset, closed without ``BYE``,
answered by another server or silent for ``--timeout`` seconds, and *drained* when the
server said ``BYE`` first. On SIGTERM it writes one JSON summary to ``F``.

Our own small client, so the benchmarks do not depend on the netlab traffic tool's
``hold`` mode, which is being written at the same time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

BYE = b"BYE\n"


def _split(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class _ArrivalRecorder(asyncio.Protocol):
    """Notes when a probe connection arrived, then closes it."""

    def __init__(self, port: int, arrivals: dict[int, list[float]]) -> None:
        self._port = port
        self._arrivals = arrivals

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._arrivals[self._port].append(time.time())
        transport.close()


class _Sessions:
    """The long-lived sessions the service holds: greet, answer pings, drain, abort."""

    def __init__(self, name: str) -> None:
        self.greeting = (name + "\n").encode()
        self.writers: set[asyncio.StreamWriter] = set()
        self.draining = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            writer.write(self.greeting)
            await writer.drain()
            while not self.draining.is_set() and await reader.readline():
                if self.draining.is_set():
                    break
                writer.write(self.greeting)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def drain(self) -> None:
        """SIGUSR1: say BYE and close every session (what a drain hook asks for)."""
        self.draining.set()
        for writer in list(self.writers):
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                writer.write(BYE)
                writer.close()

    def abort(self) -> None:
        """SIGUSR2: abort every session (a reset): clears sockets whose client is gone, so
        the next run's sessions never meet a leftover socket on a reused port."""
        for writer in list(self.writers):
            writer.transport.abort()


async def serve(
    name: str,
    listen: list[str],
    probe_host: str | None,
    probe_ports: str | None,
    record: Path | None,
) -> None:
    """Serve sessions and probe listeners until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    sessions = _Sessions(name)
    servers: list[asyncio.AbstractServer] = []
    for address in listen:
        host, port = _split(address)
        servers.append(
            await asyncio.start_server(
                sessions.handle, host, port, reuse_address=True, backlog=4096
            )
        )
    arrivals: dict[int, list[float]] = defaultdict(list)
    if probe_host and probe_ports:
        servers += await _probe_listeners(probe_host, probe_ports, arrivals)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, sessions.drain)
    loop.add_signal_handler(signal.SIGUSR2, sessions.abort)
    await stop.wait()
    for server in servers:
        server.close()
    if record is not None:
        _write_json(record, {str(p): t for p, t in arrivals.items()})


async def _probe_listeners(
    host: str, ports: str, arrivals: dict[int, list[float]]
) -> list[asyncio.AbstractServer]:
    """One listener per probed port (``FIRST:COUNT``), stamping every connection."""
    loop = asyncio.get_running_loop()
    first, _, count = ports.partition(":")
    servers: list[asyncio.AbstractServer] = []
    for port in range(int(first), int(first) + int(count)):
        arrivals[port] = []
        servers.append(
            await loop.create_server(
                lambda port=port: _ArrivalRecorder(port, arrivals),  # type: ignore[misc]
                host,
                port,
                family=socket.AF_INET,
                reuse_address=True,
                backlog=1024,
            )
        )
    return servers


class _Session:
    def __init__(self, index: int) -> None:
        self.index = index
        self.server = ""
        self.state = "opening"
        self.reason = ""
        self.at = 0.0
        self.port = 0  # the client's source port: finds the flow in servers' tables

    def end(self, state: str, reason: str) -> None:
        if self.state == "open":
            self.state, self.reason, self.at = state, reason, time.time()


async def _keep(  # noqa: PLR0913  # keyword-only knobs of one test session
    session: _Session,
    host: str,
    port: int,
    interval: float,
    timeout: float,
    *,
    opened: asyncio.Queue[None],
    stop: asyncio.Event,
    source: str | None = None,
) -> None:
    try:
        async with asyncio.timeout(10):
            local = (source, 0) if source else None
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
            session.port = int(writer.get_extra_info("sockname")[1])
            session.server = (await reader.readline()).decode().strip()
    except (OSError, TimeoutError) as error:
        session.state, session.reason = "failed", type(error).__name__
        opened.put_nowait(None)
        return
    session.state = "open"
    opened.put_nowait(None)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
            if stop.is_set():
                break
            writer.write(b"ping\n")
            try:
                async with asyncio.timeout(timeout):
                    await writer.drain()
                    line = await reader.readline()
            except TimeoutError:
                session.end("broken", "timeout")
                break
            if line == BYE:
                session.end("drained", "bye")
                break
            answer = line.decode().strip()
            if not answer:
                session.end("broken", "closed")
                break
            if answer != session.server:
                session.end("broken", f"answered by {answer}")
                break
    except (ConnectionError, OSError) as error:
        session.end("broken", type(error).__name__)
    finally:
        writer.close()


async def hold(
    target: str,
    count: int,
    interval: float,
    timeout: float,
    *,
    ready_file: Path,
    result_file: Path,
    source: str | None = None,
) -> None:
    """Hold ``count`` sessions until SIGTERM; write the ready and result files."""
    host, port = _split(target)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sessions = [_Session(i) for i in range(count)]
    opened: asyncio.Queue[None] = asyncio.Queue()
    tasks = []
    for session in sessions:
        keep = _keep(
            session, host, port, interval, timeout, opened=opened, stop=stop, source=source
        )
        tasks.append(loop.create_task(keep))
        if len(tasks) % 50 == 0:  # do not flood the listen backlog
            await asyncio.sleep(0.01)
    for _ in sessions:
        await opened.get()
    _write_json(ready_file, _summary(sessions))
    await stop.wait()
    await asyncio.gather(*tasks, return_exceptions=True)
    _write_json(result_file, _summary(sessions))


def _write_json(path: Path, data: object) -> None:
    """A small file written once, at a moment nothing else runs: blocking is fine."""
    path.write_text(json.dumps(data), encoding="utf-8")


def _summary(sessions: list[_Session]) -> dict[str, Any]:
    return {
        "sessions": [
            {"server": s.server, "state": s.state, "reason": s.reason, "at": s.at, "port": s.port}
            for s in sessions
        ]
    }


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--listen", action="append", default=[], help="HOST:PORT, repeatable")
    s.add_argument("--probe-host")
    s.add_argument("--probe-ports", help="FIRST:COUNT")
    s.add_argument("--record", type=Path)
    h = sub.add_parser("hold")
    h.add_argument("--target", required=True)
    h.add_argument("--sessions", type=int, default=400)
    h.add_argument("--interval", type=float, default=0.3)
    h.add_argument("--timeout", type=float, default=3.0)
    h.add_argument("--ready-file", type=Path, required=True)
    h.add_argument("--result-file", type=Path, required=True)
    h.add_argument("--source", help="the client address to connect from (default: any)")
    args = parser.parse_args()
    if args.command == "serve":
        asyncio.run(serve(args.name, args.listen, args.probe_host, args.probe_ports, args.record))
    else:
        asyncio.run(
            hold(
                args.target,
                args.sessions,
                args.interval,
                args.timeout,
                ready_file=args.ready_file,
                result_file=args.result_file,
                source=args.source,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
