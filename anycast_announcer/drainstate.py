"""The drain state file: drains that must survive a restart of the sidecar.

Format (JSON, unchanged from earlier releases, so an upgrade keeps its drains)::

    {"drains": {"10.255.0.1/32": {"reason": "kernel upgrade", "started_at": 1767225600.0}}}

Saving is atomic and durable (``files.write_private_file_atomic``, mode 0600): a crash
leaves the old state or the new one, and a symlink planted at the path is replaced, never
followed. Loading never stops the start-up: a missing file means no drains, and a file
that cannot be used (empty, not JSON, a wrong field, an impossible timestamp, a symlink,
too large) is logged, renamed to ``<file>.bad-<unix time>`` for the operator to look at,
and treated as empty. Refusing to start instead would keep every healthy prefix
withdrawn (and, as once happened, leave addresses added to ``lo`` behind).
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from anycast_announcer.config import parse_prefix
from anycast_announcer.files import write_private_file_atomic

__all__ = ["MAX_STATE_BYTES", "PersistedDrain", "load_drain_state", "save_drain_state"]

log = structlog.get_logger("anycast_announcer.drainstate")

MAX_STATE_BYTES = 1024 * 1024
REASON_MAX = 200
_LATEST_PLAUSIBLE = 4_102_444_800.0
"""2100-01-01: a larger started_at is a corrupted file, not a drain."""


@dataclass(frozen=True, slots=True)
class PersistedDrain:
    """One drain as saved: the prefix (normalised), why, and since when (Unix time)."""

    prefix: str
    reason: str
    started_at: float


class _BadStateError(Exception):
    """The file cannot be used; the message says why, for the log."""


def save_drain_state(path: str | os.PathLike[str], drains: Sequence[PersistedDrain]) -> None:
    """Write ``drains`` to ``path`` atomically, mode 0600; raises OSError on failure."""
    document = {
        "drains": {
            drain.prefix: {"reason": drain.reason, "started_at": drain.started_at}
            for drain in drains
        }
    }
    write_private_file_atomic(path, json.dumps(document, indent=1, sort_keys=True) + "\n")


def load_drain_state(
    path: str | os.PathLike[str], now: float | None = None
) -> list[PersistedDrain]:
    """The drains saved at ``path``; [] when there is no file or it cannot be used.

    An unusable file is logged (``drain_state_unreadable``) and moved aside. ``now``
    (Unix time, default the clock) names the moved file.
    """
    name = os.fspath(path)
    try:
        text = _read(name)
    except FileNotFoundError:
        return []
    except (_BadStateError, OSError) as error:
        _set_aside(name, _why(error), now)
        return []
    try:
        return _parse(text)
    except _BadStateError as error:
        _set_aside(name, str(error), now)
        return []


def _why(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read: {error.strerror.lower()}"
    return str(error)


def _read(name: str) -> str:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError:
        if os.path.islink(name):  # O_NOFOLLOW: ELOOP
            raise _BadStateError("is a symbolic link") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _BadStateError("not a regular file")
        data = os.read(fd, MAX_STATE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_STATE_BYTES:
        raise _BadStateError(f"larger than {MAX_STATE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadStateError("not UTF-8 text") from None


def _parse(text: str) -> list[PersistedDrain]:
    if not text.strip():
        raise _BadStateError("empty")
    try:
        document = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise _BadStateError(f"not JSON: {str(error)[:100]}") from None
    if not isinstance(document, dict) or not isinstance(document.get("drains"), dict):
        raise _BadStateError("no 'drains' mapping at the top")
    return [_entry(prefix, entry) for prefix, entry in document["drains"].items()]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _entry(prefix: str, entry: Any) -> PersistedDrain:
    where = f"drains[{prefix[:60]!r}]"
    try:
        network = parse_prefix(prefix)
    except ValueError as error:
        raise _BadStateError(f"{where}: {error}") from None
    if not isinstance(entry, dict):
        raise _BadStateError(f"{where}: not a mapping")
    reason = entry.get("reason")
    if not isinstance(reason, str) or len(reason) > REASON_MAX:
        raise _BadStateError(f"{where}.reason: not a string of at most {REASON_MAX} characters")
    started_at = entry.get("started_at")
    if (
        isinstance(started_at, bool)
        or not isinstance(started_at, int | float)
        or not math.isfinite(started_at)
        or not 0 <= started_at <= _LATEST_PLAUSIBLE
    ):
        raise _BadStateError(f"{where}.started_at: not a Unix time")
    return PersistedDrain(str(network), _printable(reason), float(started_at))


def _printable(reason: str) -> str:
    # Reasons reach log lines and the status page; a file edited by hand may hold anything.
    cleaned = "".join(char if " " <= char <= "~" else "?" for char in reason)
    return cleaned or "restored"


def _set_aside(name: str, why: str, now: float | None) -> None:
    stamp = int(time.time() if now is None else now)
    aside = f"{name}.bad-{stamp}"
    try:
        os.rename(name, aside)
    except OSError as error:
        log.error(
            "drain_state_unreadable", path=name, error=why, moved_to=None, move_error=str(error)
        )
        return
    log.error("drain_state_unreadable", path=name, error=why, moved_to=aside)
