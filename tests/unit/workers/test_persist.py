"""DrainStateWriter: off the loop, one write at a time, the newest state last."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from structlog.testing import capture_logs

from anycast_announcer.drainstate import PersistedDrain, load_drain_state
from anycast_announcer.workers.persist import DrainStateWriter

A = (PersistedDrain("10.255.0.1/32", "maintenance", 1.0),)
B = (PersistedDrain("10.255.0.2/32", "kernel upgrade", 2.0),)
C = ()


class TestDrainStateWriter:
    async def test_writes_the_real_file(self, tmp_path: Path) -> None:
        writer = DrainStateWriter()
        path = str(tmp_path / "drain.json")
        writer.save(path, A)
        await writer.flush()
        assert load_drain_state(path) == list(A)

    async def test_changes_during_a_write_collapse_into_the_newest(self) -> None:
        """A slow fsync: of the states saved meanwhile only the last is written next."""
        written: list[tuple[str, Sequence[PersistedDrain]]] = []
        release = threading.Event()

        def slow_save(path: str, drains: Sequence[PersistedDrain]) -> None:
            release.wait(10)
            written.append((path, tuple(drains)))

        writer = DrainStateWriter(slow_save)
        writer.save("/state", A)
        writer.save("/state", B)
        writer.save("/state", C)
        release.set()
        await writer.flush()
        assert written in ([("/state", A), ("/state", C)], [("/state", C)])
        assert written[-1] == ("/state", C)

    async def test_a_failed_write_is_logged_and_the_next_still_happens(self) -> None:
        written: list[Sequence[PersistedDrain]] = []

        def save(path: str, drains: Sequence[PersistedDrain]) -> None:
            if drains == A:
                raise PermissionError(13, "Permission denied", path)
            written.append(tuple(drains))

        writer = DrainStateWriter(save)
        with capture_logs() as logs:
            writer.save("/state", A)
            await writer.flush()
            writer.save("/state", B)
            await writer.flush()
        assert written == [B]
        (error,) = [e for e in logs if e["event"] == "drain_state_not_saved"]
        assert (error["path"], error["log_level"]) == ("/state", "error")

    async def test_flush_without_a_save_returns(self) -> None:
        await DrainStateWriter().flush()
