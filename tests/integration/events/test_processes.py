"""Pid file watch with real processes: exits, re-arming, bad pid files, no fd leaks."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from anycast_announcer.events.processes import (
    PidFileState,
    PidFileWatch,
    ProcessExited,
)
from tests.integration.events.support import eventually

pytestmark = pytest.mark.integration

RECHECK = 0.02  # seconds between pid file checks in these tests


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes to watch (sleep 600); killed and reaped at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def start(sleepers: list[subprocess.Popen[bytes]], pid_file: Path) -> subprocess.Popen[bytes]:
    """A new process, its pid written to ``pid_file`` as a service would."""
    proc = subprocess.Popen(["sleep", "600"])
    sleepers.append(proc)
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def armed(watch: PidFileWatch, pid: int) -> Callable[[], bool]:
    """A predicate: the watch is watching ``pid``."""
    return lambda: watch.status.state is PidFileState.WATCHING and watch.status.pid == pid


def exited(seen: list[ProcessExited], pid: int) -> Callable[[], bool]:
    """A predicate: the exit of ``pid`` was reported."""
    return lambda: any(event.pid == pid for event in seen)


def state(watch: PidFileWatch) -> PidFileState:
    """The watch's state now (a call, so the type checker does not narrow it)."""
    return watch.status.state


def open_fds() -> int:
    """File descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_exit_is_reported(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]], sig: signal.Signals
) -> None:
    """The watched process dies: one ProcessExited with its pid."""
    pid_file = tmp_path / "svc.pid"
    proc = start(sleepers, pid_file)
    seen: list[ProcessExited] = []
    async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
        assert watch.status.state is PidFileState.WATCHING
        proc.send_signal(sig)
        await eventually(lambda: seen, "no ProcessExited")
        assert seen == [ProcessExited(proc.pid, pid_file)]
        assert state(watch) is PidFileState.EXITED


async def test_a_new_pid_rearms_and_a_stale_file_does_not(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """After an exit the watch waits for the file to change (pid reuse), then follows it."""
    pid_file = tmp_path / "svc.pid"
    first = start(sleepers, pid_file)
    seen: list[ProcessExited] = []
    async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
        first.kill()
        await eventually(lambda: seen, "no ProcessExited for the first process")
        await asyncio.sleep(RECHECK * 5)  # several re-checks of the unchanged file
        assert state(watch) is PidFileState.EXITED
        second = start(sleepers, pid_file)
        await eventually(armed(watch, second.pid), "the new pid was not watched")
        second.kill()
        await eventually(lambda: len(seen) == 2, "no ProcessExited for the second process")
        assert seen[1] == ProcessExited(second.pid, pid_file)


async def test_a_changed_pid_moves_the_watch(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """The file names another live process: the old one's exit is no longer reported."""
    pid_file = tmp_path / "svc.pid"
    old = start(sleepers, pid_file)
    seen: list[ProcessExited] = []
    async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
        new = start(sleepers, pid_file)
        await eventually(lambda: watch.status.pid == new.pid, "the new pid was not picked up")
        old.kill()
        new.kill()
        await eventually(lambda: seen, "no ProcessExited for the new process")
        assert seen == [ProcessExited(new.pid, pid_file)]


@pytest.mark.parametrize(
    ("content", "state", "detail"),
    [
        (None, PidFileState.MISSING, "does not exist"),
        ("", PidFileState.INVALID, "empty"),
        ("nginx\n", PidFileState.INVALID, "not a pid"),
        ("4194304\n", PidFileState.NO_PROCESS, "4194304"),
    ],
)
async def test_unusable_pid_files_are_a_status_not_an_event(
    tmp_path: Path, content: str | None, state: PidFileState, detail: str
) -> None:
    """Missing, garbage, or a pid with no process: a clear status and no event."""
    pid_file = tmp_path / "svc.pid"
    if content is not None:
        pid_file.write_text(content)
    seen: list[ProcessExited] = []
    async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
        await asyncio.sleep(RECHECK * 5)
        assert watch.status.state is state
        assert detail in watch.status.detail
    assert seen == []


async def test_a_pid_file_that_appears_later_is_picked_up(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """The service starts after the watch: the periodic check arms it."""
    pid_file = tmp_path / "svc.pid"
    seen: list[ProcessExited] = []
    async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
        assert watch.status.state is PidFileState.MISSING
        proc = start(sleepers, pid_file)
        await eventually(lambda: watch.status.state is PidFileState.WATCHING, "never armed")
        proc.kill()
        await eventually(lambda: seen, "no ProcessExited")


async def test_no_file_descriptor_leaks(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """Arming, exits, pid changes and closing leave no pidfd behind."""
    pid_file = tmp_path / "svc.pid"
    before = open_fds()
    seen: list[ProcessExited] = []
    for _ in range(5):
        async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
            for _ in range(4):
                proc = start(sleepers, pid_file)
                await eventually(armed(watch, proc.pid), "not armed")
                start(sleepers, pid_file)  # moved to another pid: the old pidfd closed
                await asyncio.sleep(RECHECK * 3)
            last = sleepers[-1]
            last.kill()
            await eventually(exited(seen, last.pid), "no ProcessExited")
    for proc in sleepers:
        proc.kill()
        proc.wait()
    assert open_fds() == before


async def test_a_pid_file_older_than_its_process_is_a_recycled_pid(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    """Regression: a stale pid file whose pid now belongs to an unrelated process was
    watched as if it were the service. A service writes its pid file after it starts,
    so a process that started later than the file was written is not the one named."""
    pid_file = tmp_path / "svc.pid"
    proc = start(sleepers, pid_file)
    written = pid_file.stat().st_mtime - 3600  # as if written an hour before the process
    os.utime(pid_file, (written, written))
    seen: list[ProcessExited] = []
    async with PidFileWatch(pid_file, seen.append, interval=RECHECK) as watch:
        assert watch.status.state is PidFileState.STALE
        assert watch.status.pid == proc.pid
        assert "started after" in watch.status.detail
        proc.kill()
        proc.wait()
        await asyncio.sleep(RECHECK * 5)  # rechecks run; an armed watch would report now
        assert seen == []
        replacement = start(sleepers, pid_file)  # rewritten now: a real service's pid
        await eventually(armed(watch, replacement.pid), "the rewritten pid file not armed")
