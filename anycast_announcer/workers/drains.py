"""Drain workers: run a prefix's drain hook, then count its established connections."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection

import structlog

from anycast_announcer.config import CommandHook, HttpHook
from anycast_announcer.connections import count_established
from anycast_announcer.core.effects import StartDrainWorker
from anycast_announcer.core.inputs import ConnectionsCounted, DrainHookFinished
from anycast_announcer.hooks import run_hook
from anycast_announcer.workers import Submit

__all__ = ["CONNECTION_POLL_INTERVAL", "DrainWorkers"]

log = structlog.get_logger("anycast_announcer")

CONNECTION_POLL_INTERVAL = 0.5

Counter = Callable[[str, Collection[int]], int]
"""Counts established connections to an address and ports (blocking: run in a thread)."""
HookRunner = Callable[[CommandHook | HttpHook, float], Awaitable[tuple[bool, str]]]
"""Runs a drain hook within a timeout: (ok, outcome)."""


class DrainWorkers:
    """At most one worker per prefix, started and stopped as the core says.

    ``count`` and ``hook`` are where the workers leave the process (netlink, a command
    or a URL); tests put fakes there.
    """

    def __init__(
        self,
        submit: Submit,
        *,
        count: Counter = count_established,
        hook: HookRunner = run_hook,
        poll_interval: float = CONNECTION_POLL_INTERVAL,
    ) -> None:
        self._submit = submit
        self._count = count
        self._hook = hook
        self._poll_interval = poll_interval
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> frozenset[str]:
        """Prefixes with a worker."""
        return frozenset(self._tasks)

    def start(self, order: StartDrainWorker) -> None:
        """Start the prefix's worker (a second start for the same prefix is ignored)."""
        if order.prefix not in self._tasks:
            self._tasks[order.prefix] = asyncio.get_running_loop().create_task(self._run(order))

    def stop(self, prefix: str) -> None:
        """Cancel the prefix's worker, if any."""
        task = self._tasks.pop(prefix, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Cancel every worker and wait for them."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, order: StartDrainWorker) -> None:
        if order.hook is not None:
            ok, outcome = await self._hook(order.hook, order.hook_timeout)
            self._submit(DrainHookFinished(order.prefix, ok, outcome))
        while True:
            try:
                count = await asyncio.to_thread(self._count, order.address, order.ports)
            except Exception as error:  # netlink trouble must not stall a drain
                # Counting failed: the drain falls back to its connection timeout.
                log.warning("connection_count_failed", prefix=order.prefix, error=repr(error))
            else:
                self._submit(ConnectionsCounted(order.prefix, count))
            await asyncio.sleep(self._poll_interval)
