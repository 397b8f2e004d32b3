"""An event loop on a virtual clock: timers fire in order, at once, with exact times.

``loop.time()`` reads a virtual clock; when the loop would sleep until its next timer
and no file descriptor is ready, the clock jumps to that timer instead. Code under test
keeps using ``asyncio.sleep`` and ``asyncio.timeout_at`` (time stays a parameter of the
loop, nothing is patched), and the tests assert exact times without wall-clock windows.
Only for code whose I/O is in-process (fakes at the process boundary): real sockets or
threads would see virtual time run ahead of them.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualClockLoop", "run_virtual"]

_T = TypeVar("_T")


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only real I/O can wake the loop
            return super().select(None)
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` is virtual (starts at 0)."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now


def run_virtual(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a fresh virtual-clock loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
