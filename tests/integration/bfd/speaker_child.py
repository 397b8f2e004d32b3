"""Our BFD speaker in a process of its own, driven over stdin/stdout with JSON lines.

Run inside a lab namespace by the interop tests and the benchmark: the speaker needs the
server's addresses, which only exist in that namespace. It runs the way the sidecar does:
an asyncio loop beating the speaker's heartbeat, the speaker on its own thread. Commands
(one JSON object per line): add, timers, admin_down, admin_up, snapshot, freeze (block the
event loop for N seconds, as a stuck probe would), stop. Events go to stdout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import sys
import time
from typing import Any

import structlog

from anycast_announcer.bfd import SessionSnapshot, StateChanged, Timers
from anycast_announcer.bfd.speaker import IPAddr, PeerSpec, Speaker

HEARTBEAT = 0.05


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def view(snapshot: SessionSnapshot) -> dict[str, Any]:
    data = dataclasses.asdict(snapshot)
    for key in ("state", "remote_state", "local_diag", "remote_diag"):
        data[key] = data[key].name
    return data


def timers_of(command: dict[str, Any]) -> Timers:
    return Timers(command["min_tx"], command["min_rx"], command["mult"])


async def main() -> None:
    # stdout carries our JSON events; the speaker's own log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    loop = asyncio.get_running_loop()

    def changed(peer: IPAddr, change: StateChanged, snapshot: SessionSnapshot) -> None:
        event = {
            "event": "changed",
            "peer": str(peer),
            "old": change.old.name,
            "new": change.new.name,
            "diag": change.diag.name,
            "at": change.at,
        }
        loop.call_soon_threadsafe(emit, event)

    speaker = Speaker(changed, heartbeat_timeout=float(sys.argv[1]) if sys.argv[1:] else 0.2)
    speaker.start()

    async def heartbeat() -> None:
        while True:
            speaker.beat()
            await asyncio.sleep(HEARTBEAT)

    beating = asyncio.create_task(heartbeat())
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit({"event": "ready"})
    while line := await reader.readline():
        command = json.loads(line)
        op = command["op"]
        peer = ipaddress.ip_address(command["peer"]) if "peer" in command else None
        if op == "add":
            assert peer is not None
            local = ipaddress.ip_address(command["local"]) if command.get("local") else None
            speaker.add_peer(PeerSpec(peer, timers_of(command), local))
        elif op == "timers":
            assert peer is not None
            speaker.set_timers(peer, timers_of(command))
        elif op == "admin_down":
            assert peer is not None
            speaker.admin_down(peer)
        elif op == "admin_up":
            assert peer is not None
            speaker.admin_up(peer)
        elif op == "freeze":
            # Blocks the loop on purpose, as a stuck probe would: no heartbeat.
            time.sleep(command["seconds"])  # noqa: ASYNC251
        elif op == "stop":
            break
        if op == "snapshot":
            sessions = {str(p): view(s) for p, s in speaker.snapshots().items()}
            lateness = list(speaker.stats.lateness)
            stats = dataclasses.asdict(speaker.stats) | {"lateness": lateness}
            emit({"event": "snapshot", "sessions": sessions, "stats": stats})
        else:
            emit({"event": "ok", "op": op})
    beating.cancel()
    speaker.stop(admin_down=True)
    emit({"event": "stopped"})


if __name__ == "__main__":
    asyncio.run(main())
