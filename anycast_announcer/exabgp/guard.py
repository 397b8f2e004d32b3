"""Start ExaBGP so that it dies with the sidecar, even if the sidecar is SIGKILLed.

    python -m anycast_announcer.exabgp.guard PARENT_PID PROGRAM [ARGS...]

asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), makes sure the
parent is still the expected one (it may have died before the request), then execs
PROGRAM. Doing this in a separate program instead of a ``preexec_fn`` keeps Python code
out of the window between fork and exec, which is unsafe once the sidecar has threads
(connection counting and name lookups run in a thread pool). Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> int:
    """Arm the death signal, check the parent, exec the program."""
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        print(
            "usage: python -m anycast_announcer.exabgp.guard PARENT_PID PROGRAM [ARGS...]",
            file=sys.stderr,
        )
        return 2
    parent = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        print(f"cannot set PR_SET_PDEATHSIG: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    if os.getppid() != parent:
        return 1  # the sidecar is already gone: nothing may be announced
    program = sys.argv[2]
    try:
        os.execv(program, sys.argv[2:])  # noqa: S606  # our own argv, no shell by design
    except OSError as error:
        print(f"cannot run {program}: {error.strerror}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
