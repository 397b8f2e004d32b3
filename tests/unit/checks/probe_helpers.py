"""Helpers shared by the probe tests (a plain module: conftest is for fixtures)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"


def open_fds() -> set[str]:
    """This process's open file descriptors."""
    return set(os.listdir("/proc/self/fd"))


def live_processes(*, pgid: int | None = None, env_token: str | None = None) -> list[int]:
    """Pids of processes that are not zombies, in group ``pgid`` or with ``env_token`` set.

    Zombies are ignored: killed grandchildren are reparented to PID 1, which in a container
    may never reap them, and a zombie runs nothing.
    """
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the parenthesised command name: state ppid pgrp ...
            state, _, group = stat.rsplit(")", 1)[1].split()[:3]
            if state == "Z":
                continue
            in_group = pgid is not None and int(group) == pgid
            tagged = env_token is not None and env_token.encode() in _environ(entry)
            if in_group or tagged:
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # the process went away while we looked
    return found


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds pass; whether it held."""
    deadline = time.monotonic() + within
    for _ in itertools.count():
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    raise AssertionError("unreachable")


def _environ(process: Path) -> bytes:
    return (process / "environ").read_bytes()
