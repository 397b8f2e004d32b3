"""When the probe scheduler probes: pure slot arithmetic, then the scheduler itself on a
virtual clock, with the probe seam answering at once."""

from __future__ import annotations

import asyncio

import pytest

from anycast_announcer.config import CommandCheck, HttpCheck, ServiceConfig, TcpCheck
from anycast_announcer.core.inputs import Input, ProbeCompleted
from anycast_announcer.results import ProbeCategory, ProbeResult
from anycast_announcer.workers.probes import (
    STARTUP_PROBES_PER_S,
    ProbeScheduler,
    next_slot,
    start_offsets,
)
from tests.unit.virtualclock import run_virtual


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

    def test_strictly_after_despite_rounding(self) -> None:
        """Regression: 0.05 + 2.0 == 2.05 made the slot "after" 2.05 be 2.05 itself, so a
        probe ran twice at once (and forever, on a virtual clock)."""
        assert next_slot(0.05, 2.0, 0.05 + 2.0) > 0.05 + 2.0
        assert next_slot(0.05, 2.0, 2.05) == pytest.approx(4.05)


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


class StampingProbe:
    """The probe seam: answers at once (healthy), stamping when each probe started."""

    def __init__(self) -> None:
        self.started: dict[int, list[float]] = {}

    async def probe(
        self, check: TcpCheck | HttpCheck | CommandCheck, timeout: float
    ) -> ProbeResult:
        assert isinstance(check, TcpCheck)
        self.started.setdefault(check.port, []).append(asyncio.get_running_loop().time())
        return ProbeResult(True, 0.0, "connected")


PORTS = [7001, 7002, 7003, 7004]


def test_new_services_are_probed_soon_then_on_their_grid() -> None:
    """Four services at interval 2 s: all are probed within the confirm interval (0.4 s),
    not up to an interval later, and their next probes keep their spread grid.

    On a virtual clock, so the times are exact (the test used to sleep 4.5 s of wall
    time and allow 0.3 s of slack either way)."""
    stamping = StampingProbe()
    results: list[Input] = []

    async def main() -> None:
        scheduler = ProbeScheduler(stamping, results.append)
        scheduler.schedule([service(f"s{port}", port, interval=2.0) for port in PORTS])
        await asyncio.sleep(4.5)
        await scheduler.close()

    run_virtual(main())
    # First probes at 0, 0.1, 0.2, 0.3 s; grids at 0, 0.5, 1.0, 1.5 s (+ k x 2 s); the
    # second probe takes the grid's next slot, so no gap exceeds the interval.
    assert [stamping.started[port][0] for port in PORTS] == pytest.approx([0, 0.1, 0.2, 0.3])
    assert [stamping.started[port][1] for port in PORTS] == pytest.approx([2.0, 0.5, 1.0, 1.5])
    assert all(
        isinstance(r, ProbeCompleted) and r.result.category is ProbeCategory.OK for r in results
    ), results


def test_fast_cadence_probes_at_the_confirm_interval_until_slowed() -> None:
    stamping = StampingProbe()
    web = service("web", PORTS[0], interval=2.0)  # confirm interval 0.4 s

    async def main() -> None:
        scheduler = ProbeScheduler(stamping, lambda _: None)
        scheduler.schedule([web])
        await asyncio.sleep(0.05)  # the first probe (at 0) ran
        scheduler.set_fast("web", True)
        await asyncio.sleep(1.0)
        scheduler.set_fast("web", False)
        await asyncio.sleep(3.0)
        await scheduler.close()

    run_virtual(main())
    # Slowing down takes effect after the probe already due (1.2).
    assert stamping.started[PORTS[0]] == pytest.approx([0, 0.4, 0.8, 1.2, 2.0, 4.0])


def test_an_unscheduled_service_forgets_its_fast_cadence() -> None:
    """Regression: a service removed while fast and added again (a reload) kept probing
    at the confirm interval, though the core had forgotten it was fast."""
    stamping = StampingProbe()
    web = service("web", PORTS[0], interval=2.0)

    async def main() -> None:
        scheduler = ProbeScheduler(stamping, lambda _: None)
        scheduler.schedule([web])
        scheduler.set_fast("web", True)
        await asyncio.sleep(0.05)
        scheduler.schedule([])
        stamping.started.clear()
        scheduler.schedule([web])
        await asyncio.sleep(3.0)
        await scheduler.close()

    run_virtual(main())
    assert stamping.started[PORTS[0]] == pytest.approx([0.05, 2.05])
