"""Reading a process's identity from /proc: its state and when it started (no deps).

A pid alone does not name a process: the kernel recycles pids. A pid plus its start
time does. Both the sidecar (a pid file's process) and netlab (the daemons it spawned)
tell a recycled pid apart this way, so the parsing lives here, importing nothing of
either.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["boot_time", "start_ticks", "started_at", "stat_fields"]


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None when
    there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    return text[text.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (proc(5) field 22)."""
    fields = stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of proc(5), 20th after ')'


def boot_time() -> float:
    """Unix time of the boot (``btime`` of /proc/stat; whole seconds)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def started_at(pid: int) -> float | None:
    """Unix time the process started (to about a second: ``btime`` is whole seconds)."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    return boot_time() + ticks / os.sysconf("SC_CLK_TCK")
