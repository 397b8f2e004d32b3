"""The guard that makes ExaBGP die with the sidecar (real processes, no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GUARD = [sys.executable, "-m", "anycast_announcer.exabgp.guard"]


def test_runs_the_program_when_the_parent_is_the_expected_one() -> None:
    result = subprocess.run(
        [*GUARD, str(os.getpid()), "/bin/echo", "hello"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert (result.returncode, result.stdout) == (0, "hello\n")


def test_refuses_when_the_parent_is_not_the_expected_one() -> None:
    """If the sidecar died before the guard armed itself, nothing may start."""
    result = subprocess.run(
        [*GUARD, "1", "/bin/echo", "hello"], capture_output=True, text=True, check=False, timeout=30
    )
    assert (result.returncode, result.stdout) == (1, "")


def test_program_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL the parent: the kernel SIGKILLs the guarded program (PR_SET_PDEATHSIG)."""
    pid_file = tmp_path / "child.pid"
    parent_code = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen({GUARD!r} + [str(os.getpid()), '/bin/sleep', '60'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the guarded child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        _wait_for_exec(child, "/bin/sleep", deadline)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        while _alive(child):
            assert time.monotonic() < deadline, "the guarded program outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _wait_for_exec(pid: int, program: str, deadline: float) -> None:
    while True:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(program.encode()):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{pid} never became {program}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running, not a zombie (pid 1 here may never reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
