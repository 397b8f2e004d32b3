"""``body_regex`` searches off the event loop, in worker processes that are killed on time.

Python's ``re`` backtracks and holds the GIL while it does: a catastrophic pattern such
as ``(a+)+$`` against 26 bytes once froze the event loop, and with it every probe and
withdrawal, for a second. A thread would not help (the GIL), and the stack has no
regex engine with a time limit. So searches run in small worker processes:

- at most ``workers`` at once (default 4); a probe waits for a free one;
- a worker is reused while its searches finish;
- a search that is cancelled (the probe's timeout expired, which covers both waiting for
  a worker and searching) gets its worker SIGKILLed, and the next search starts a fresh
  one. The event loop only ever waits on pipes.

Workers die with the sidecar (PR_SET_PDEATHSIG), even if it is SIGKILLed mid-search.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

__all__ = ["RegexError", "RegexMatcher", "RegexWorker"]

_CHILD = Path(__file__).with_name("_regex_child.py")
DEFAULT_WORKERS = 4


class RegexError(Exception):
    """The pattern does not compile (or the search failed) in the worker."""


class RegexWorker:
    """One worker process; ``search`` may be called again after it returned."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls) -> RegexWorker:
        """Start a worker; raises OSError (EMFILE, EAGAIN...) or RuntimeError if we cannot."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",  # isolated: no environment, no user site, no current directory
            "-S",  # no site-packages: the child needs the standard library only
            str(_CHILD),
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(process)

    @property
    def alive(self) -> bool:
        """The process still runs."""
        return self._process.returncode is None

    async def search(self, pattern: str, text: str) -> bool:
        """Whether ``pattern`` is found in ``text``; RegexError if it cannot be searched.

        Cancellation leaves the worker mid-search: the caller must ``kill`` it then.
        """
        stdin, stdout = self._process.stdin, self._process.stdout
        assert stdin is not None  # we asked for pipes
        assert stdout is not None
        encoded_pattern = pattern.encode("utf-8", "surrogatepass")
        encoded_text = text.encode("utf-8", "surrogatepass")
        stdin.write(struct.pack("!II", len(encoded_pattern), len(encoded_text)))
        stdin.write(encoded_pattern + encoded_text)
        await stdin.drain()
        try:
            answer = await stdout.readexactly(1)
            if answer == b"E":
                (size,) = struct.unpack("!I", await stdout.readexactly(4))
                message = (await stdout.readexactly(size)).decode("utf-8", "replace")
                raise RegexError(message)
        except asyncio.IncompleteReadError:
            raise RegexError("the regex worker exited") from None
        return answer == b"1"

    def kill(self) -> None:
        """SIGKILL the worker; the event loop's child watcher reaps it."""
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    async def close(self) -> None:
        """Kill the worker and wait until it is gone."""
        self.kill()
        await self._process.wait()


class RegexMatcher:
    """A small pool of ``RegexWorker``s shared by all HTTP probes of a sidecar."""

    def __init__(self, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[RegexWorker] = []
        self._busy: set[RegexWorker] = set()
        self._reaping: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> int:
        """Workers lent out to a search right now."""
        return len(self._busy)

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[RegexWorker]:
        """A worker for one search: reused afterwards if the search ended, else killed.

        Waiting for a free slot and starting a process happen here, before the caller's
        search: a caller can tell the two apart by where its timeout struck.
        """
        async with self._slots:
            worker = await self._take()
            self._busy.add(worker)
            try:
                yield worker
            except BaseException:
                self._discard(worker)
                raise
            else:
                if worker.alive:
                    self._idle.append(worker)
                else:
                    self._discard(worker)
            finally:
                self._busy.discard(worker)

    async def search(self, pattern: str, text: str) -> bool:
        """Search with a pooled worker (for callers that need no phases)."""
        async with self.worker() as worker:
            return await worker.search(pattern, text)

    async def _take(self) -> RegexWorker:
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                return worker
        return await RegexWorker.start()

    def _discard(self, worker: RegexWorker) -> None:
        worker.kill()
        task = asyncio.get_running_loop().create_task(worker.close())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def aclose(self) -> None:
        """Kill every worker and wait for them."""
        workers = [*self._idle, *self._busy]
        self._idle.clear()
        await asyncio.gather(*(worker.close() for worker in workers), *self._reaping)
