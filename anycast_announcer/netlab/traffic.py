"""Lab traffic toward an anycast address: who answers new connections, and which
long-lived sessions survive a change in the fabric.

    python -m anycast_announcer.netlab.traffic shares --target 10.255.0.1:8080 --count 2000

prints JSON ``{"answers": {"srv1": n, ...}, "failed": n, "errors": {...}}``. Each connection
comes from a new source port, so the fabric's L4 hash spreads them like independent flows.

    python -m anycast_announcer.netlab.traffic hold --target 10.255.0.1:8080 --sessions 300 \\
        --ready-file /tmp/ready.json [--duration 30]

opens ``--sessions`` TCP sessions, notes which server greeted each one, writes that start
summary to ``--ready-file`` once every session is open (so a test knows when to act),
then sends a line on every session each ``--interval`` seconds and expects the same server
name back. A session is *broken* when it is reset, closed, answered by another server or
not answered within ``--timeout``; it stays broken. On SIGTERM/SIGINT, or after
``--duration``, it prints one JSON summary: total, started_on (per server), broken and
broken_by_server / broken_by_reason, survived, and each broken session with its time.
With the lab service a session the fabric rehashes to another server is reset by that
server's kernel, so "broken" is what a real client of an anycast service would see.

    python -m anycast_announcer.netlab.traffic downloads --target 10.255.0.1:8080 \\
        --count 60 --size 1000000 [--timeout 10]

opens ``--count`` connections (each from a new source port), asks each for ``--size``
bytes (the service's ``bulk`` line) and prints JSON ``{"completed": {"srv1": n, ...},
"hung": {"srv2": n, ...}, "failed": n}``: a download *hangs* when it has not received
every byte within ``--timeout`` seconds (a path MTU black hole looks like that).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _split_target(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


async def _one(host: str, port: int, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            line = await reader.readline()
        finally:
            writer.close()
    if not line:
        raise ConnectionError("closed without an answer")
    return line.decode().strip()


async def measure_shares(
    target: str, count: int, concurrency: int = 50, timeout: float = 2.0
) -> dict[str, object]:
    """Open ``count`` connections (``concurrency`` at a time) and count the answers."""
    host, port = _split_target(target)
    answers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(concurrency)

    async def attempt() -> None:
        async with semaphore:
            try:
                answers[await _one(host, port, timeout)] += 1
            except (OSError, TimeoutError, ConnectionError) as exc:
                errors[type(exc).__name__] += 1

    await asyncio.gather(*(attempt() for _ in range(count)))
    return {
        "target": target,
        "count": count,
        "answers": dict(sorted(answers.items())),
        "failed": sum(errors.values()),
        "errors": dict(errors),
    }


# -- large downloads ------------------------------------------------------------------


async def _download(host: str, port: int, size: int, timeout: float) -> tuple[str | None, bool]:
    """(server that greeted, whether all ``size`` bytes arrived in time)."""
    server: str | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            server = (await reader.readline()).decode().strip() or None
            writer.write(f"bulk {size}\n".encode())
            await writer.drain()
            await reader.readline()  # the name again, then the bytes
            await reader.readexactly(size)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return server, False
    finally:
        if writer is not None:
            writer.close()
    return server, True


async def measure_downloads(
    target: str, count: int, size: int, timeout: float = 10.0, concurrency: int = 20
) -> dict[str, object]:
    """Run ``count`` downloads of ``size`` bytes; completed and hung ones per server."""
    host, port = _split_target(target)
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> tuple[str | None, bool]:
        async with semaphore:
            return await _download(host, port, size, timeout)

    results = await asyncio.gather(*(one() for _ in range(count)))
    completed = Counter(server for server, ok in results if ok and server)
    hung = Counter(server for server, ok in results if not ok and server)
    return {
        "target": target,
        "count": count,
        "size": size,
        "completed": dict(sorted(completed.items())),
        "hung": dict(sorted(hung.items())),
        "failed": sum(1 for server, _ in results if server is None),
    }


# -- long-lived sessions --------------------------------------------------------------


@dataclass(slots=True)
class HeldSession:
    """One long-lived session: where it started and, once it broke, when and why."""

    index: int
    server: str | None = None  # None: it never opened
    open_error: str | None = None
    broken_reason: str | None = None
    broken_at: float | None = None  # wall clock (time.time()), comparable across processes
    pings: int = 0

    @property
    def broken(self) -> bool:
        return self.broken_reason is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "server": self.server,
            "reason": self.broken_reason,
            "at": self.broken_at,
            "pings": self.pings,
        }


@dataclass(slots=True)
class HoldResult:
    """What happened to every session of one ``hold`` run."""

    target: str
    requested: int
    started_at: float
    ready_at: float | None = None
    stopped_at: float | None = None
    sessions: list[HeldSession] = field(default_factory=list)

    def start_summary(self) -> dict[str, Any]:
        """Which server each open session started on; written once all are open."""
        opened = [s for s in self.sessions if s.server is not None]
        return {
            "target": self.target,
            "requested": self.requested,
            "total": len(opened),
            "open_failed": self.requested - len(opened),
            "started_on": dict(
                sorted(Counter(s.server for s in opened if s.server is not None).items())
            ),
            "ready_at": self.ready_at,
        }

    def summary(self) -> dict[str, Any]:
        """The final report: totals, per-server breakage and every broken session."""
        opened = [s for s in self.sessions if s.server is not None]
        broken = [s for s in opened if s.broken]
        return {
            **self.start_summary(),
            "open_errors": dict(
                Counter(s.open_error for s in self.sessions if s.open_error is not None)
            ),
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "broken": len(broken),
            "survived": len(opened) - len(broken),
            "broken_by_server": dict(
                sorted(Counter(s.server for s in broken if s.server is not None).items())
            ),
            "broken_by_reason": dict(
                sorted(
                    Counter(s.broken_reason for s in broken if s.broken_reason is not None).items()
                )
            ),
            "broken_sessions": [s.as_json() for s in broken],
        }


async def _open_session(
    host: str,
    port: int,
    session: HeldSession,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            greeting = await reader.readline()
    except (OSError, TimeoutError) as exc:
        session.open_error = type(exc).__name__
        if writer is not None:
            writer.close()
        return None
    if not greeting:
        session.open_error = "closed without a greeting"
        writer.close()
        return None
    session.server = greeting.decode().strip()
    return reader, writer


async def _keep_alive(
    session: HeldSession,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    interval: float,
    timeout: float,
    *,
    ready: asyncio.Event,
    offset: float,
) -> None:
    """Ping until cancelled or broken; the first ping waits until every session is open."""
    await ready.wait()
    # Spread the pings over the interval instead of sending them all at once.
    await asyncio.sleep(offset)
    try:
        while True:
            try:
                async with asyncio.timeout(timeout):
                    writer.write(b"ping\n")
                    await writer.drain()
                    line = await reader.readline()
            except TimeoutError:
                reason = "timeout"
            except ConnectionResetError:
                reason = "reset"
            except OSError as exc:
                reason = type(exc).__name__
            else:
                session.pings += 1
                answer = line.decode().strip()
                if not line:
                    reason = "eof"
                elif answer != session.server:
                    reason = f"moved to {answer}"
                else:
                    await asyncio.sleep(interval)
                    continue
            session.broken_reason = reason
            session.broken_at = time.time()
            return
    finally:
        writer.close()


async def hold_sessions(  # noqa: PLR0913  # independent knobs of a test client, keyword-only
    target: str,
    sessions: int,
    *,
    interval: float = 0.5,
    timeout: float = 5.0,
    open_concurrency: int = 50,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    ready_file: Path | None = None,
) -> HoldResult:
    """Hold ``sessions`` long-lived sessions until ``stop`` is set or ``duration`` passes.

    ``timeout`` bounds each ping's round trip; keep it above a few TCP retransmissions
    (the first is after 200 ms, then doubling) so a short routing gap that TCP survives
    is not counted as a break.
    """
    host, port = _split_target(target)
    result = HoldResult(target=target, requested=sessions, started_at=time.time())
    result.sessions = [HeldSession(index=i) for i in range(sessions)]
    stop = stop if stop is not None else asyncio.Event()
    ready = asyncio.Event()
    semaphore = asyncio.Semaphore(open_concurrency)

    async def opened(
        session: HeldSession,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        async with semaphore:
            return await _open_session(host, port, session, timeout)

    streams = await asyncio.gather(*(opened(s) for s in result.sessions))
    tasks = [
        asyncio.create_task(
            _keep_alive(
                session,
                pair[0],
                pair[1],
                interval,
                timeout,
                ready=ready,
                offset=interval * index / sessions,
            )
        )
        for index, (session, pair) in enumerate(zip(result.sessions, streams, strict=True))
        if pair is not None
    ]
    result.ready_at = time.time()
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(json.dumps(result.start_summary()) + "\n", encoding="utf-8")
        tmp.replace(ready_file)  # whoever polls for the file never sees half of it
    ready.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(duration):
            await stop.wait()
    result.stopped_at = time.time()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def _hold_until_signal(args: argparse.Namespace) -> HoldResult:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return await hold_sessions(
        args.target,
        args.sessions,
        interval=args.interval,
        timeout=args.timeout,
        open_concurrency=args.concurrency,
        duration=args.duration,
        stop=stop,
        ready_file=args.ready_file,
    )


def command(action: str, target: str, **options: object) -> list[str]:
    """The command line that runs ``action`` toward ``target`` in a lab node, with
    ``options`` as ``--name value`` (``ready_file`` becomes ``--ready-file``)."""
    line = [sys.executable, "-m", "anycast_announcer.netlab.traffic", action, "--target", target]
    for name, value in options.items():
        line += [f"--{name.replace('_', '-')}", str(value)]
    return line


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shares = commands.add_parser("shares", help="count answers over many new connections")
    shares.add_argument("--target", required=True, help="host:port ([v6]:port)")
    shares.add_argument("--count", type=int, default=1000)
    shares.add_argument("--concurrency", type=int, default=50)
    downloads = commands.add_parser("downloads", help="large downloads; count hung ones")
    downloads.add_argument("--target", required=True, help="host:port ([v6]:port)")
    downloads.add_argument("--count", type=int, default=60)
    downloads.add_argument("--size", type=int, default=1_000_000, help="bytes per download")
    downloads.add_argument("--timeout", type=float, default=10.0, help="seconds per download")
    downloads.add_argument("--concurrency", type=int, default=20)
    hold = commands.add_parser("hold", help="hold long-lived sessions; report which broke")
    hold.add_argument("--target", required=True, help="host:port ([v6]:port)")
    hold.add_argument("--sessions", type=int, default=100)
    hold.add_argument("--interval", type=float, default=0.5, help="seconds between pings")
    hold.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds a ping may take before the session counts as broken",
    )
    hold.add_argument("--concurrency", type=int, default=50, help="sessions opened at a time")
    hold.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: SIGTERM/SIGINT)",
    )
    hold.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write the start summary here once every session is open",
    )
    args = parser.parse_args()
    if args.command == "shares":
        print(json.dumps(asyncio.run(measure_shares(args.target, args.count, args.concurrency))))
    elif args.command == "downloads":
        result = measure_downloads(
            args.target, args.count, args.size, args.timeout, args.concurrency
        )
        print(json.dumps(asyncio.run(result)))
    else:
        print(json.dumps(asyncio.run(_hold_until_signal(args)).summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
