"""Probing every service on its own schedule; results go to the supervisor as inputs.

Each service is probed on a fixed grid of its ``interval``; the services' grids are
spread evenly over the interval. A newly scheduled service is probed once soon, within
its ``confirm_interval`` (longer only when that would exceed ``STARTUP_PROBES_PER_S``),
so that start-up and a reload do not wait up to a whole interval to know it, and then
joins its grid at the next slot. While the core says a streak is changing the service's state
(``set_fast``), the next probe comes one ``confirm_interval`` after the last one started
instead, so a first failure is confirmed (or refuted) in a fraction of the interval; a
probe already sleeping toward its slot is woken for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Protocol

from anycast_announcer.checks import Probe
from anycast_announcer.config import ServiceConfig
from anycast_announcer.core.inputs import ProbeCompleted
from anycast_announcer.workers import Submit

__all__ = ["STARTUP_PROBES_PER_S", "LagSink", "ProbeScheduler", "next_slot", "start_offsets"]

STARTUP_PROBES_PER_S = 1000.0
"""The rate the first probes of newly scheduled services are spread to, at most."""


class LagSink(Protocol):
    """Where schedule lag is reported (``Metrics``)."""

    def probe_started(self, lag: float) -> None: ...


class ProbeScheduler:
    """One task per service; unchanged services keep theirs across reloads."""

    def __init__(self, probe: Probe, submit: Submit, lag: LagSink | None = None) -> None:
        self._probe = probe
        self._submit = submit
        self._lag = lag
        self._tasks: dict[str, tuple[ServiceConfig, asyncio.Task[None]]] = {}
        self._fast: dict[str, asyncio.Event] = {}

    def schedule(self, services: Sequence[ServiceConfig]) -> None:
        """Probe exactly ``services`` from now on."""
        loop = asyncio.get_running_loop()
        wanted = {service.name: service for service in services}
        for name, (spec, task) in list(self._tasks.items()):
            if wanted.get(name) != spec:
                task.cancel()
                del self._tasks[name]
        for name in set(self._fast) - set(wanted):
            # The core forgets a removed service's cadence: so must we, or the same name
            # added back later would start fast with no one to slow it down.
            del self._fast[name]
        new = [(i, s) for i, s in enumerate(services) if s.name not in self._tasks]
        for rank, (index, service) in enumerate(new):
            first, phase = start_offsets(service, rank, len(new), index, len(services))
            task = loop.create_task(self._loop(service, first, phase))
            self._tasks[service.name] = (service, task)

    def set_fast(self, service: str, fast: bool) -> None:
        """Probe ``service`` at its confirm interval (True) or normal interval (False)."""
        event = self._fast.setdefault(service, asyncio.Event())
        if fast:
            event.set()
        else:
            event.clear()

    async def close(self) -> None:
        """Cancel every probe and wait for them to clean up."""
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, service: ServiceConfig, first: float, phase: float) -> None:
        """Probe once at ``first``, then on the grid ``phase`` + k x interval; a late
        probe skips missed slots instead of bursting."""
        loop = asyncio.get_running_loop()
        fast = self._fast.setdefault(service.name, asyncio.Event())
        now = loop.time()
        due, grid = now + first, now + phase
        started = due
        while True:
            due = await self._until_due(service, fast, due, started)
            started = loop.time()
            if self._lag is not None:
                self._lag.probe_started(started - due)
            result = await self._probe.probe(service.check, service.timeout)
            self._submit(ProbeCompleted(service.name, result))
            # The next slot of the grid, even moments after a first or confirming probe
            # that came off it: waiting for a later slot would leave more than an
            # interval between two probes.
            due = next_slot(grid, service.interval, loop.time())

    async def _until_due(
        self, service: ServiceConfig, fast: asyncio.Event, due: float, started: float
    ) -> float:
        """Sleep until the slot ``due``, or until one confirm interval after ``started``
        when the service is (or becomes) fast; the time the probe is due."""
        loop = asyncio.get_running_loop()
        if not fast.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await fast.wait()
        if fast.is_set():
            due = min(due, started + service.confirm_interval)
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return due


def start_offsets(
    service: ServiceConfig, rank: int, new: int, index: int, total: int
) -> tuple[float, float]:
    """(first, phase) for the ``rank``-th of ``new`` services scheduled together, the
    ``index``-th of all ``total``: its first probe ``first`` seconds from now, spread over
    its confirm interval (or longer, to stay under ``STARTUP_PROBES_PER_S``), and its
    place ``phase`` on the interval grid.

    The grids are spread evenly over the interval: bunched, 2,000 services probed in the
    same 100 ms every second and ran late (schedule lag p99 135 ms at a third of a core).
    """
    window = min(service.interval, max(service.confirm_interval, new / STARTUP_PROBES_PER_S))
    return window * rank / max(new, 1), service.interval * index / max(total, 1)


def next_slot(origin: float, interval: float, after: float) -> float:
    """The first time ``origin`` + k x ``interval`` (k >= 0) later than ``after``."""
    if after < origin:
        return origin
    slot = origin + interval * (math.floor((after - origin) / interval) + 1)
    # Rounding can land the slot on ``after`` itself (0.05 + 2.0 vs 2.05): a probe due
    # now would run twice at once, so the slot after it is the one.
    return slot if slot > after else slot + interval
