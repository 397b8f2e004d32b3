"""BFD transmit lateness against event-loop lag, on loopback.

Two speakers (127.0.0.1 and 127.0.0.2) run sessions to each other in this process, as
the sidecar runs its speaker; the event loop is kept busy by callbacks that burn the CPU
for ``lag`` seconds at a time (a CPU-bound probe, holding the GIL), with a heartbeat task
beside them as in the sidecar. What is measured is how late each periodic transmit left
against its schedule, and how many transmits were held back because the loop's heartbeat
was older than the speaker's heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import time
from typing import Any

from anycast_announcer.bfd import SessionSnapshot, StateChanged, Timers
from anycast_announcer.bfd.speaker import IPAddr, PeerSpec, Speaker
from anycast_announcer.workers.bfd import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT

A = ipaddress.ip_address("127.0.0.1")
B = ipaddress.ip_address("127.0.0.2")
LAGS = (0.0, 0.01, 0.05, 0.1, 0.15, 0.3)


def _quiet(peer: IPAddr, change: StateChanged, snapshot: SessionSnapshot) -> None:
    del peer, change, snapshot


async def _measure(lag: float, seconds: float, timers: Timers) -> dict[str, Any]:
    one = Speaker(_quiet, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    two = Speaker(_quiet, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    one.start()
    two.start()
    one.add_peer(PeerSpec(B, timers, A))
    two.add_peer(PeerSpec(A, timers, B))

    async def beat() -> None:
        while True:
            one.beat()
            two.beat()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def busy() -> None:
        while True:
            if lag:
                end = time.monotonic() + lag
                while time.monotonic() < end:  # holds the GIL like a CPU-bound probe
                    pass
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(beat()), asyncio.create_task(busy())]
    try:
        await asyncio.sleep(4.0)  # up, and the Poll Sequence to the configured rate done
        one.stats.lateness.clear()
        downs_before = one.snapshots()[B].packets_received
        await asyncio.sleep(seconds)
        lateness = sorted(one.stats.lateness)
        state = one.snapshots()[B].state.name
        received = one.snapshots()[B].packets_received - downs_before
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        one.stop(admin_down=False)
        two.stop(admin_down=False)
    return {
        "lag_s": lag,
        "transmits": len(lateness),
        "received": received,
        "lateness_p50_ms": round(1000 * statistics.median(lateness), 2) if lateness else None,
        "lateness_p99_ms": (
            round(1000 * lateness[int(0.99 * (len(lateness) - 1))], 2) if lateness else None
        ),
        "lateness_max_ms": round(1000 * lateness[-1], 2) if lateness else None,
        "suppressed": one.stats.suppressed,
        "state_at_end": state,
    }


def run(seconds: float, lags: tuple[float, ...] = LAGS) -> list[dict[str, Any]]:
    """One row per loop lag, at 0.05 s x 3 (the smallest interval we measure)."""
    timers = Timers(0.05, 0.05, 3)
    return [asyncio.run(_measure(lag, seconds, timers)) for lag in lags]
