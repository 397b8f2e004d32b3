"""What every probe returns, and the wording shared by the probe modules."""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass

# Reasons end up in log lines; a runaway stderr line or TLS message must not flood them.
REASON_DETAIL_MAX = 200


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe: healthy or not, how long it took, and why, in a few words."""

    ok: bool
    latency: float
    """Seconds from the start of the probe to its verdict (monotonic clock)."""
    reason: str
    """Short and stable (``"connect refused"``, ``"http status 503"``), meant for log lines."""


def finish(started: float, *, ok: bool, reason: str) -> ProbeResult:
    """A result whose latency runs from ``started`` (a ``time.monotonic()`` value) to now."""
    return ProbeResult(ok=ok, latency=time.monotonic() - started, reason=reason)


def timeout_reason(timeout: float) -> str:
    """``"timeout after 0.5s"``; ``:g`` keeps ``0.5`` short and ``2`` without ``.0``."""
    return f"timeout after {timeout:g}s"


def shorten(text: str, limit: int = REASON_DETAIL_MAX) -> str:
    """``text`` on one line and at most ``limit`` characters, marking a cut with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connect refused",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connect timed out",
    errno.ECONNRESET: "connection reset",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EPIPE: "connection closed",
}


def os_error_reason(error: OSError) -> str:
    """A short reason for a failed socket operation, preferring our stable wording."""
    if error.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[error.errno]
    if error.strerror:
        return shorten(error.strerror.lower())
    return shorten(str(error) or type(error).__name__)
