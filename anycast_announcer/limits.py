"""Process limits raised at start-up.

The soft limit on open files is often 1024 while the hard limit is far higher. The
sidecar holds a socket per probe in flight, per API connection and per BGP session, so
it raises the soft limit to the hard one (capped by the kernel's ``fs.nr_open``; an
infinite hard limit is not a value ``setrlimit`` takes for files). The HTTP server's
connection cap, not this limit, is what bounds a flood; this only moves the cliff away.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NofileChange", "raise_nofile_limit"]

_NR_OPEN = Path("/proc/sys/fs/nr_open")
_FALLBACK_CEILING = 1 << 20


@dataclass(frozen=True, slots=True)
class NofileChange:
    """RLIMIT_NOFILE's soft limit before and after, and the hard limit."""

    before: int
    after: int
    hard: int


def _kernel_ceiling() -> int:
    try:
        return int(_NR_OPEN.read_text().strip())
    except (OSError, ValueError):
        return _FALLBACK_CEILING


def raise_nofile_limit() -> NofileChange:
    """Raise the soft RLIMIT_NOFILE to the hard limit; never lowers it.

    Raises OSError (or ValueError) only if the kernel refuses a value at or below the
    hard limit, which it does not on Linux; callers may treat that as a warning.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = _kernel_ceiling()
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    after, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NofileChange(before=soft, after=after, hard=hard)
