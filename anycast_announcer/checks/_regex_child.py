"""The regex worker: runs ``re.search`` for the sidecar, in a process the sidecar may kill.

Started by ``checks.regex`` as ``python -I -S THIS_FILE PARENT_PID`` (by path, so that
nothing but the standard library is imported). It asks the kernel for SIGKILL when its
parent dies, so a search stuck in catastrophic backtracking never outlives the sidecar.

Protocol on stdin/stdout, one request at a time: the request is two big-endian 32-bit
lengths (pattern, text) followed by both as UTF-8; the answer is one byte, ``1`` (found)
or ``0`` (not found), or ``E`` followed by a 32-bit length and an error message.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import struct
import sys
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1
_MAX = 16 * 1024 * 1024
_CACHE_MAX = 64


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _answer(out: BinaryIO, pattern: str, text: str, cache: dict[str, re.Pattern[str]]) -> None:
    try:
        compiled = cache.get(pattern)
        if compiled is None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            compiled = cache[pattern] = re.compile(pattern)
        out.write(b"1" if compiled.search(text) is not None else b"0")
    except (re.error, RecursionError, MemoryError, OverflowError) as error:
        message = str(error).encode("utf-8", "replace")[:300]
        out.write(b"E" + struct.pack("!I", len(message)) + message)
    out.flush()


def main() -> int:
    parent = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return 1  # the sidecar is already gone
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    cache: dict[str, re.Pattern[str]] = {}
    while True:
        header = _read_exact(stdin, 8)
        if header is None:
            return 0
        pattern_size, text_size = struct.unpack("!II", header)
        if pattern_size > _MAX or text_size > _MAX:
            return 2
        pattern = _read_exact(stdin, pattern_size)
        text = _read_exact(stdin, text_size)
        if pattern is None or text is None:
            return 0
        _answer(
            stdout,
            pattern.decode("utf-8", "surrogatepass"),
            text.decode("utf-8", "surrogatepass"),
            cache,
        )


if __name__ == "__main__":
    sys.exit(main())
