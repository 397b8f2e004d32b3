"""Command probe: healthy when the command exits 0 within the timeout.

The command runs in a session (and so a process group) of its own. Whatever way the probe
ends (exit, timeout, cancellation) the whole group is sent SIGKILL afterwards, so a check
script that forks a helper and exits, or hangs, never leaves processes behind; the group is
killed even after a clean exit for exactly that first case.

stderr goes to a pipe this module owns rather than one asyncio manages: asyncio ties its
pipes to the child's transport, so a grandchild that escapes the group while holding stderr
could keep that open. Here the read end is closed on return, whatever the children do; only
the last few KiB are kept, so a chatty check cannot grow our memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

from anycast_announcer.checks._result import (
    SIDECAR_ERRNOS,
    ProbeCategory,
    ProbeResult,
    finish,
    os_error_result,
    shorten,
    sidecar_failure,
    sidecar_reason,
    timeout_reason,
)
from anycast_announcer.config import CommandCheck

__all__ = ["probe"]

_STDERR_KEEP = 4096
_DRAIN_CHUNKS_MAX = 64


async def probe(check: CommandCheck, timeout: float) -> ProbeResult:
    """Run ``check.argv`` (no shell) and wait at most ``timeout`` seconds for it to exit."""
    started = time.monotonic()
    try:
        read_fd, write_fd = os.pipe()  # both ends non-inheritable (O_CLOEXEC) by default
    except OSError as error:  # EMFILE: the sidecar's shortage says nothing of the check
        return os_error_result(started, error)
    try:
        try:
            process = await _spawn(check, write_fd)
        except _SpawnError as failed:
            return failed.result(started)
        finally:
            os.close(write_fd)
        return await _wait(process, read_fd, timeout, started)
    finally:
        os.close(read_fd)


class _SpawnError(Exception):
    def __init__(self, reason: str, category: ProbeCategory, cause: BaseException) -> None:
        super().__init__(reason)
        self.reason = reason
        self.category = category
        self.cause = cause

    def result(self, started: float) -> ProbeResult:
        if self.category is ProbeCategory.SIDECAR:
            return sidecar_failure(started, self.cause, self.reason)
        return finish(started, ok=False, reason=self.reason, category=self.category)


async def _spawn(check: CommandCheck, stderr_fd: int) -> asyncio.subprocess.Process:
    env = {**os.environ, **check.env} if check.env else None
    try:
        return await asyncio.create_subprocess_exec(
            *check.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_fd,
            cwd=check.cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as error:
        if error.errno in SIDECAR_ERRNOS:
            # fork() with EAGAIN/ENOMEM or a pipe with EMFILE: we could not try, so the
            # check's program has not failed.
            raise _SpawnError(sidecar_reason(error), ProbeCategory.SIDECAR, error) from None
        reason = f"cannot run: {error.strerror or error}"
        if check.cwd is not None and error.filename == check.cwd:
            reason += f" (cwd {shorten(check.cwd)})"  # not the program that is missing
        raise _SpawnError(reason, ProbeCategory.CANNOT_RUN, error) from None
    except ValueError as error:  # e.g. a NUL byte in argv or env
        raise _SpawnError(
            f"cannot run: {shorten(str(error))}", ProbeCategory.CANNOT_RUN, error
        ) from None
    except RuntimeError as error:  # the child watcher's thread could not be started
        raise _SpawnError(
            f"sidecar cannot probe: {shorten(str(error))}", ProbeCategory.SIDECAR, error
        ) from None


async def _wait(
    process: asyncio.subprocess.Process, read_fd: int, timeout: float, started: float
) -> ProbeResult:
    stderr = _Tail(read_fd)
    with stderr:
        try:
            async with asyncio.timeout(timeout) as deadline:
                returncode = await process.wait()
        except TimeoutError:
            if not deadline.expired():
                raise
            return finish(
                started, ok=False, reason=timeout_reason(timeout), category=ProbeCategory.TIMEOUT
            )
        finally:
            _kill_group(process.pid)
            if process.returncode is None:
                # SIGKILL cannot be ignored, so this wait is short; reaping here keeps
                # zombies from piling up when probes time out every second.
                await process.wait()
        category = (
            ProbeCategory.OK
            if returncode == 0
            else ProbeCategory.EXIT_STATUS
            if returncode > 0
            else ProbeCategory.SIGNAL
        )
        return finish(
            started, ok=returncode == 0, reason=_exit_reason(returncode, stderr), category=category
        )


def _kill_group(pgid: int) -> None:
    # start_new_session made the child a session and group leader, so its pid is the
    # group id; the group lives on while any member does, even after the leader exited.
    with contextlib.suppress(ProcessLookupError):  # everyone had already gone
        os.killpg(pgid, signal.SIGKILL)


def _exit_reason(returncode: int, stderr: _Tail) -> str:
    # asyncio reports death by signal N as -N.
    reason = f"exit status {returncode}" if returncode >= 0 else f"killed by signal {-returncode}"
    if returncode != 0:
        last_line = stderr.last_line()
        if last_line:
            reason += f": {last_line}"
    return reason


class _Tail:
    """Reads a non-blocking pipe from the event loop, keeping only its last bytes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._data = bytearray()
        self._loop = asyncio.get_running_loop()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._read)
        self._reading = True

    def __enter__(self) -> _Tail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def _read(self) -> None:
        self._read_chunk()

    def _read_chunk(self) -> bool:
        """Read what the pipe holds; False when it holds nothing now or is at its end."""
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:  # end of file: every writer is gone
            self._stop()
            return False
        self._data += chunk
        del self._data[:-_STDERR_KEEP]
        return True

    def _stop(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False

    def last_line(self) -> str:
        """The last non-empty line written so far (after draining the pipe), shortened."""
        # Bounded: a writer that escaped the process group could keep the pipe full forever.
        for _ in range(_DRAIN_CHUNKS_MAX):
            if not (self._reading and self._read_chunk()):
                break
        text = self._data.decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        return shorten(lines[-1]) if lines else ""
