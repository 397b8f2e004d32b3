"""Process watch: the process named by a pid file exited, known at once through a pidfd.

Theory of operation: the watch reads the pid file, opens a pidfd for that pid
(``pidfd_open``) and waits for it to become readable on the running loop, which the
kernel makes it the moment the process exits: a :class:`ProcessExited` is reported and
the pidfd closed. The file is re-checked every ``interval`` seconds (one ``stat``, and a
read only when it changed): a new pid re-arms the watch. After an exit the watch re-arms
only when the file changes, because a crashed service leaves its pid file behind and
the pid in it may be recycled by an unrelated process. For the same reason a pid whose
process started after the pid file was last written is not armed (``STALE``): a service
writes its pid file once it runs, so a younger process took a recycled pid (start time
from /proc, ``procfs``, checked after ``pidfd_open`` so the pidfd holds the process
that was checked). A missing file, a file that does not hold a pid, a pid with no
process or a stale one are states with a clear reason, never events. The pid is read in
the watch's own pid namespace.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import structlog

from anycast_announcer.procfs import started_at

__all__ = [
    "PidFileState",
    "PidFileStatus",
    "PidFileWatch",
    "ProcessExited",
    "parse_pid",
]

log = structlog.get_logger("anycast_announcer.events")

_MAX_PID_FILE = 64  # a pid file holds one number; anything longer is not one
_PID_MAX = 1 << 22  # PID_MAX_LIMIT on 64-bit Linux
_START_SLACK = 2.0
"""Seconds a process may seem to start after its pid file's mtime: the boot time that
start times count from is whole seconds, and file timestamps are coarse too."""


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """The watched process ``pid`` (read from ``pid_file``) exited."""

    pid: int
    pid_file: Path


class PidFileState(enum.Enum):
    """Where the watch stands."""

    WATCHING = "watching"
    EXITED = "exited"
    MISSING = "missing"
    INVALID = "invalid"
    NO_PROCESS = "no process"
    STALE = "stale"
    """The pid's process started after the pid file was written: a recycled pid."""
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PidFileStatus:
    """The state, the pid concerned (if any) and a reason a person can read."""

    state: PidFileState
    pid: int | None
    detail: str


def parse_pid(text: bytes) -> int:
    """The pid in a pid file's content (one decimal number, whitespace around it).

    Raises ValueError with a message that says what is wrong.
    """
    if len(text) > _MAX_PID_FILE:
        raise ValueError(f"{len(text)} bytes, too long for a pid")
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty")
    if not stripped.isdigit():
        raise ValueError(f"not a pid: {stripped[:20]!r}")
    pid = int(stripped)
    if not 0 < pid <= _PID_MAX:
        raise ValueError(f"pid {pid} out of range")
    return pid


_Identity = tuple[int, int, int, int]
_Seen = tuple[_Identity | None, bytes | str]


def _identity(path: Path) -> _Identity | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class PidFileWatch:
    """Reports :class:`ProcessExited` to ``on_exit`` when the pid file's process exits.

    Use as ``async with PidFileWatch(path, callback) as watch: ...``; :attr:`status`
    says what is watched. The callback runs on the event loop and must not block.
    """

    def __init__(
        self,
        pid_file: Path,
        on_exit: Callable[[ProcessExited], None],
        interval: float = 1.0,
    ) -> None:
        self.pid_file = pid_file
        self._on_exit = on_exit
        self._interval = interval
        self._pidfd: int | None = None
        self._pid: int | None = None
        self._seen: _Seen = (None, b"")
        self._read_once = False
        self._status = PidFileStatus(PidFileState.CLOSED, None, "not opened")
        self._recheck: asyncio.Task[None] | None = None
        self.exits = 0

    @property
    def status(self) -> PidFileStatus:
        """What the watch is doing now, and why."""
        return self._status

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Read the pid file, arm, and re-check it every ``interval`` seconds."""
        if self._recheck is not None:
            return
        self.check()
        self._recheck = asyncio.get_running_loop().create_task(self._recheck_forever())

    def close(self) -> None:
        """Stop watching and close the pidfd."""
        if self._recheck is not None:
            self._recheck.cancel()
            self._recheck = None
        self._disarm()
        self._status = PidFileStatus(PidFileState.CLOSED, None, "closed")

    async def __aenter__(self) -> PidFileWatch:
        self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the pid file ---------------------------------------------------------------------

    def check(self) -> PidFileStatus:
        """Re-read the pid file; act only if it changed (or was never read).

        "Changed" compares the file's identity (device, inode, mtime, size) and its
        content, so a rewrite inside one timestamp tick is still seen.
        """
        seen = self._read()
        if self._read_once and seen == self._seen:
            return self._status
        self._read_once = True
        self._seen = seen
        identity, content = seen
        if identity is None:
            return self._problem(PidFileState.MISSING, None, f"{self.pid_file} does not exist")
        if isinstance(content, str):
            return self._problem(PidFileState.INVALID, None, f"{self.pid_file}: {content}")
        try:
            pid = parse_pid(content)
        except ValueError as exc:
            return self._problem(PidFileState.INVALID, None, f"{self.pid_file}: {exc}")
        if pid != self._pid or self._pidfd is None:
            self._arm(pid)
        return self._status

    def _read(self) -> _Seen:
        """(identity, content), or an error text for a file that is there but unreadable."""
        identity = _identity(self.pid_file)
        if identity is None:
            return None, b""
        try:
            with self.pid_file.open("rb") as file:
                return identity, file.read(_MAX_PID_FILE + 1)
        except FileNotFoundError:
            return None, b""
        except OSError as exc:  # a directory, no permission: unusable, say why
            return identity, f"cannot read it: {exc.strerror}"

    def _problem(self, state: PidFileState, pid: int | None, detail: str) -> PidFileStatus:
        # A process already watched stays watched: its exit is still worth reporting.
        if self._pidfd is None:
            self._status = PidFileStatus(state, pid, detail)
            log.info("pid_file_unusable", pid_file=str(self.pid_file), reason=detail)
        return self._status

    def _arm(self, pid: int) -> None:
        self._disarm()
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._problem(PidFileState.NO_PROCESS, pid, f"no process {pid} ({self.pid_file})")
            return
        except OSError as exc:
            self._problem(PidFileState.NO_PROCESS, pid, f"pidfd_open({pid}): {exc.strerror}")
            return
        if self._recycled(pid):
            os.close(pidfd)
            return
        self._pidfd, self._pid = pidfd, pid
        asyncio.get_running_loop().add_reader(pidfd, self._exited)
        self._status = PidFileStatus(PidFileState.WATCHING, pid, f"watching {pid}")
        log.info("process_watch_armed", pid=pid, pid_file=str(self.pid_file))

    def _recycled(self, pid: int) -> bool:
        """Whether ``pid``'s process is younger than the pid file (then say so)."""
        identity = self._seen[0]
        started = started_at(pid)
        if identity is None or started is None:
            return False
        written = identity[2] / 1e9
        if started <= written + _START_SLACK:
            return False
        self._status = PidFileStatus(
            PidFileState.STALE,
            pid,
            f"process {pid} started after {self.pid_file} was written: a recycled pid",
        )
        log.info("pid_file_unusable", pid_file=str(self.pid_file), reason=self._status.detail)
        return True

    def _disarm(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _exited(self) -> None:
        pid = self._pid
        assert pid is not None
        self._disarm()
        self.exits += 1
        self._status = PidFileStatus(
            PidFileState.EXITED, pid, f"process {pid} exited; waiting for {self.pid_file} to change"
        )
        log.info("process_exited", pid=pid, pid_file=str(self.pid_file))
        self._on_exit(ProcessExited(pid, self.pid_file))

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()
