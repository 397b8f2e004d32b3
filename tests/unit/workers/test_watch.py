"""DrainFileWatch: reports the drain file's appearance and disappearance once each."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from anycast_announcer.config import Config
from anycast_announcer.core.inputs import DrainFileChanged, Input
from anycast_announcer.workers.watch import DrainFileWatch
from tests.unit.workers.fakes import BASE
from tests.unit.workers.polling import until


def _config(drain_file: Path | None) -> Config:
    drain: dict[str, Any] = {**BASE["drain"]}
    if drain_file is not None:
        drain["drain_file"] = str(drain_file)
    return Config.model_validate({**BASE, "drain": drain})


class TestDrainFileWatch:
    def test_reports_each_change_once(self, tmp_path: Path) -> None:
        path = tmp_path / "drain"
        seen: list[Input] = []
        watch = DrainFileWatch(seen.append, lambda: _config(path))
        watch.poll()
        watch.poll()
        path.touch()
        watch.poll()
        watch.poll()
        path.unlink()
        watch.poll()
        assert seen == [DrainFileChanged(False), DrainFileChanged(True), DrainFileChanged(False)]

    def test_follows_the_path_of_the_config_in_force(self, tmp_path: Path) -> None:
        first, second = tmp_path / "first", tmp_path / "second"
        second.touch()
        current = {"config": _config(first)}
        seen: list[Input] = []
        watch = DrainFileWatch(seen.append, lambda: current["config"])
        watch.poll()
        current["config"] = _config(second)  # a reload names another file, present
        watch.poll()
        current["config"] = _config(None)  # and then none at all
        watch.poll()
        assert seen == [DrainFileChanged(False), DrainFileChanged(True), DrainFileChanged(False)]

    async def test_runs_until_cancelled(self, tmp_path: Path) -> None:
        path = tmp_path / "drain"
        path.touch()
        seen: list[Input] = []
        task = asyncio.create_task(DrainFileWatch(seen.append, lambda: _config(path)).run())
        try:
            await until(lambda: seen, "the first poll never reported")
            assert seen == [DrainFileChanged(True)]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
