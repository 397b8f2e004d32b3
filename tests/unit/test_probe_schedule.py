"""When the probe scheduler probes: pure slot arithmetic, then the scheduler itself
probing a real listener through the real Prober."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from anycast_announcer.checks import ProbeCategory, Prober, ProbeResult
from anycast_announcer.config import CommandCheck, HttpCheck, ServiceConfig, TcpCheck
from anycast_announcer.core.inputs import Input, ProbeCompleted
from anycast_announcer.workers.probes import (
    STARTUP_PROBES_PER_S,
    ProbeScheduler,
    next_slot,
    start_offsets,
)


def service(name: str, port: int = 9, interval: float = 5.0, **extra: float) -> ServiceConfig:
    return ServiceConfig.model_validate(
        {
            "name": name,
            "check": {"type": "tcp", "host": "127.0.0.1", "port": port},
            "interval": interval,
            "timeout": min(1.0, interval),
            **extra,
        }
    )


class TestNextSlot:
    def test_before_the_origin_the_origin(self) -> None:
        assert next_slot(10.0, 2.0, 3.0) == 10.0

    def test_strictly_after(self) -> None:
        assert next_slot(10.0, 2.0, 10.0) == 12.0
        assert next_slot(10.0, 2.0, 11.9) == 12.0
        assert next_slot(10.0, 2.0, 12.0) == 14.0

    def test_skips_missed_slots_instead_of_bursting(self) -> None:
        assert next_slot(10.0, 2.0, 17.5) == 18.0


class TestStartOffsets:
    def test_first_probes_within_the_confirm_interval_grids_over_the_interval(self) -> None:
        specs = [service(f"s{i}") for i in range(10)]  # interval 5 s, confirm 1 s
        offsets = [start_offsets(s, i, 10, i, 10) for i, s in enumerate(specs)]
        assert [first for first, _ in offsets] == pytest.approx([i / 10 for i in range(10)])
        assert [phase for _, phase in offsets] == pytest.approx([i / 2 for i in range(10)])

    def test_a_large_start_is_paced(self) -> None:
        count = int(3 * STARTUP_PROBES_PER_S)
        first, _ = start_offsets(service("last", interval=5.0), count - 1, count, 0, count)
        assert first == pytest.approx(3.0, rel=1e-3)

    def test_never_later_than_one_interval(self) -> None:
        count = int(100 * STARTUP_PROBES_PER_S)
        first, _ = start_offsets(service("last", interval=2.0), count - 1, count, 0, count)
        assert first < 2.0

    def test_a_reload_spreads_only_the_new_services(self) -> None:
        # The 900th of 1,000 services, alone new: probed at once, placed late on the grid.
        first, phase = start_offsets(service("new"), 0, 1, 900, 1000)
        assert first == 0.0
        assert phase == pytest.approx(4.5)


class StampingProber:
    """The real Prober, stamping when each probe of each service started."""

    def __init__(self, prober: Prober) -> None:
        self._prober = prober
        self.started: dict[int, list[float]] = {}

    async def probe(
        self, check: TcpCheck | HttpCheck | CommandCheck, timeout: float
    ) -> ProbeResult:
        assert isinstance(check, TcpCheck)
        self.started.setdefault(check.port, []).append(asyncio.get_running_loop().time())
        return await self._prober.probe(check, timeout)


@pytest.fixture
def listeners() -> Iterator[list[int]]:
    sockets = []
    for _ in range(4):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sockets.append(sock)
    yield [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()


async def test_new_services_are_probed_soon_then_on_their_grid(listeners: list[int]) -> None:
    """Four services at interval 2 s: all are probed within the confirm interval (0.4 s),
    not up to an interval later, and their next probes keep their spread grid."""
    results: list[Input] = []
    async with Prober() as prober:
        stamping = StampingProber(prober)
        scheduler = ProbeScheduler(stamping, results.append)
        loop = asyncio.get_running_loop()
        scheduled = loop.time()
        scheduler.schedule([service(f"s{port}", port, interval=2.0) for port in listeners])
        await asyncio.sleep(4.5)
        await scheduler.close()
    firsts = [stamping.started[port][0] - scheduled for port in listeners]
    assert max(firsts) < 0.4 + 0.3, firsts  # 0.3 s of slack for a busy machine
    seconds = [stamping.started[port][1] - scheduled for port in listeners]
    # First probes at 0, 0.1, 0.2, 0.3 s; grids at 0, 0.5, 1.0, 1.5 s (+ k x 2 s); the
    # second probe takes the grid's next slot, so no gap exceeds the interval.
    expected = [2.0, 0.5, 1.0, 1.5]
    assert seconds == pytest.approx(expected, abs=0.3), seconds
    assert all(
        isinstance(r, ProbeCompleted) and r.result.category is ProbeCategory.OK for r in results
    ), results
