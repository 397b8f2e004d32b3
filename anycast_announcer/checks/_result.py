"""What every probe returns, and the wording and categories shared by the probe modules.

A failed probe says *why* twice: ``reason`` in a few words for people, ``category`` as a
fixed value for programs (metrics labels, and the decision whether the result is evidence
about the service at all). ``ProbeCategory.SIDECAR`` means the sidecar itself could not
probe: it ran out of file descriptors, memory or processes (EMFILE, ENFILE, ENOMEM,
ENOBUFS, EAGAIN on fork). Such a result says nothing about the service, so it must never
count as the service failing: the core keeps the service's last state and reports the
sidecar's own fault instead.
"""

from __future__ import annotations

import errno
import time

from anycast_announcer.results import ProbeCategory, ProbeResult

__all__ = [
    "RESOURCE_KINDS",
    "SIDECAR_ERRNOS",
    "ProbeCategory",
    "ProbeResult",
    "finish",
    "os_error_category",
    "os_error_reason",
    "os_error_result",
    "resource_kind",
    "shorten",
    "sidecar_failure",
    "sidecar_reason",
    "timeout_reason",
]

# Reasons end up in log lines; a runaway stderr line or TLS message must not flood them.
REASON_DETAIL_MAX = 200


SIDECAR_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN})
"""Errors that mean the sidecar lacks a resource, whatever the service's state."""

_RESOURCE_BY_ERRNO = {
    errno.EMFILE: "emfile",
    errno.ENFILE: "enfile",
    errno.ENOMEM: "enomem",
    errno.ENOBUFS: "enobufs",
    errno.EAGAIN: "eagain",
}
RESOURCE_KINDS = (*_RESOURCE_BY_ERRNO.values(), "other")
"""Which of the sidecar's resources ran out, for ``SIDECAR`` results (a metrics label)."""


def resource_kind(error: BaseException | None) -> str:
    """The ``RESOURCE_KINDS`` value for a failure of the sidecar's own resources."""
    if isinstance(error, MemoryError):
        return "enomem"
    if isinstance(error, OSError) and error.errno is not None:
        return _RESOURCE_BY_ERRNO.get(error.errno, "other")
    return "other"


def finish(
    started: float, *, ok: bool, reason: str, category: ProbeCategory | None = None
) -> ProbeResult:
    """A result whose latency runs from ``started`` (a ``time.monotonic()`` value) to now."""
    return ProbeResult(
        ok=ok,
        latency=time.monotonic() - started,
        reason=reason,
        category=category or (ProbeCategory.OK if ok else ProbeCategory.OTHER),
    )


def timeout_reason(timeout: float) -> str:
    """``"timeout after 0.5s"``; ``:g`` keeps ``0.5`` short and ``2`` without ``.0``."""
    return f"timeout after {timeout:g}s"


def shorten(text: str, limit: int = REASON_DETAIL_MAX) -> str:
    """``text`` on one line and at most ``limit`` characters, marking a cut with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


_ERRNO_REASONS = {
    errno.ECONNREFUSED: ("connect refused", ProbeCategory.REFUSED),
    errno.EHOSTUNREACH: ("no route to host", ProbeCategory.UNREACHABLE),
    errno.ENETUNREACH: ("network unreachable", ProbeCategory.UNREACHABLE),
    errno.ETIMEDOUT: ("connect timed out", ProbeCategory.TIMEOUT),
    errno.ECONNRESET: ("connection reset", ProbeCategory.UNREACHABLE),
    errno.EADDRNOTAVAIL: ("address not available", ProbeCategory.UNREACHABLE),
    errno.EPIPE: ("connection closed", ProbeCategory.UNREACHABLE),
}


def sidecar_reason(error: OSError) -> str:
    """``"sidecar cannot probe: too many open files (EMFILE)"``."""
    name = errno.errorcode.get(error.errno or 0, "?")
    text = (error.strerror or str(error) or type(error).__name__).lower()
    return f"sidecar cannot probe: {shorten(text)} ({name})"


def os_error_reason(error: OSError) -> str:
    """A short reason for a failed socket operation, preferring our stable wording."""
    if error.errno in SIDECAR_ERRNOS:
        return sidecar_reason(error)
    if error.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[error.errno][0]
    if error.strerror:
        return shorten(error.strerror.lower())
    return shorten(str(error) or type(error).__name__)


def os_error_category(error: OSError) -> ProbeCategory:
    """The category of a failed socket operation (SIDECAR for our own resource errors)."""
    if error.errno in SIDECAR_ERRNOS:
        return ProbeCategory.SIDECAR
    if error.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[error.errno][1]
    return ProbeCategory.OTHER


def os_error_result(started: float, error: OSError) -> ProbeResult:
    """A failed result for ``error``, with its reason and category."""
    if error.errno in SIDECAR_ERRNOS:
        return sidecar_failure(started, error)
    return finish(
        started, ok=False, reason=os_error_reason(error), category=os_error_category(error)
    )


def sidecar_failure(started: float, error: BaseException, reason: str | None = None) -> ProbeResult:
    """A result saying the sidecar could not probe (no evidence about the service)."""
    if reason is None:
        if isinstance(error, OSError) and error.errno in SIDECAR_ERRNOS:
            reason = sidecar_reason(error)
        else:
            reason = f"sidecar cannot probe: {shorten(str(error) or type(error).__name__)}"
    return ProbeResult(
        ok=False,
        latency=time.monotonic() - started,
        reason=reason,
        category=ProbeCategory.SIDECAR,
        resource=resource_kind(error),
    )
