"""Stands in for ExaBGP as the relay's parent, so tests can watch what the relay does.

    python -m tests.integration.exabgp.fake_exabgp OUTDIR BRIDGE_ARGV...

Starts BRIDGE_ARGV with pipes, as ExaBGP starts its API processes, and then:
- copies its own stdin to the relay's stdin (the test plays ExaBGP's output);
- appends the relay's stdout to OUTDIR/commands (what ExaBGP would receive);
- writes the relay's exit status to OUTDIR/bridge_exit when it ends;
- on SIGTERM (which the relay sends to end ExaBGP) writes OUTDIR/terminated and exits.
It gives up by itself after a minute, so a failing test never leaves it behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType


def main() -> int:
    outdir = Path(sys.argv[1])
    bridge = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert bridge.stdin is not None
    assert bridge.stdout is not None
    bridge_stdin, bridge_stdout = bridge.stdin, bridge.stdout

    def terminated(signum: int, frame: FrameType | None) -> None:
        (outdir / "terminated").write_text(str(time.monotonic()))
        os._exit(0)

    signal.signal(signal.SIGTERM, terminated)

    def record_commands() -> None:
        with (outdir / "commands").open("ab") as out:
            while data := os.read(bridge_stdout.fileno(), 65536):
                out.write(data)
                out.flush()
        (outdir / "bridge_exit").write_text(str(bridge.wait()))

    def feed_bridge() -> None:
        try:
            while data := os.read(sys.stdin.fileno(), 65536):
                bridge_stdin.write(data)
                bridge_stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    threading.Thread(target=record_commands, daemon=True).start()
    threading.Thread(target=feed_bridge, daemon=True).start()
    time.sleep(60)
    bridge.kill()
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
