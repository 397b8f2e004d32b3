"""Lab traffic: count which server answers new connections to an anycast address.

    python -m anycast_announcer.netlab.traffic shares --target 10.255.0.1:8080 --count 2000

prints JSON ``{"answers": {"srv1": n, ...}, "failed": n, "errors": {...}}``. Each connection
comes from a new source port, so the fabric's L4 hash spreads them like independent flows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter


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


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    shares = commands.add_parser("shares", help="count answers over many new connections")
    shares.add_argument("--target", required=True, help="host:port ([v6]:port)")
    shares.add_argument("--count", type=int, default=1000)
    shares.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(measure_shares(args.target, args.count, args.concurrency))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
