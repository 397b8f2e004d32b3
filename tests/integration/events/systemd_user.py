"""A real systemd user manager with its own D-Bus bus, for the unit watch's tests.

The machine need not run systemd as PID 1: ``systemd --user`` runs as a user manager as
long as it believes the system was booted with systemd (``/run/systemd/system`` exists),
so it is started in a private mount namespace whose ``/run`` is a fresh tmpfs holding
that directory (unless the host has it already). It lives in cgroups of its own, made
for the run and removed afterwards. Its runtime directory (and so its bus socket,
``<tmp>/xdg/bus``, served by dbus-daemon through the dbus-user-session socket unit) and
its unit directory are under the test's temporary directory, so nothing is shared with
the host's own managers.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.prerequisites import unavailable

__all__ = ["UserManager", "require_user_manager", "user_manager"]

SYSTEMD = Path("/lib/systemd/systemd")
DBUS_SOCKET_UNIT = Path("/usr/lib/systemd/user/dbus.socket")
_START_TIMEOUT = 30.0

# Runs inside `unshare -m`: join our cgroups, give /run the marker systemd looks for, exec.
_LAUNCH = """
for dir in "$@"; do echo $$ > "$dir/cgroup.procs"; done
if [ ! -d /run/systemd/system ]; then
    mount -t tmpfs -o mode=755 anycast-test-run /run && mkdir -p /run/systemd/system
fi
exec /lib/systemd/systemd --user --log-target=console --log-level=notice
"""


def require_user_manager() -> None:
    """Skip unless root with systemd and the D-Bus user socket unit; in CI, fail instead."""
    problem = None
    if os.geteuid() != 0:
        problem = "the unit watch tests need root (a mount namespace and cgroups)"
    elif not SYSTEMD.exists() or not DBUS_SOCKET_UNIT.exists() or not shutil.which("unshare"):
        problem = "the unit watch tests need systemd and dbus-user-session: run `make test-deps`"
    if problem is not None:
        unavailable(problem)


def _cgroup_roots() -> list[Path]:
    """Where a process must be placed: the unified tree, or the hybrid's two trees."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [
        base / name for name in ("systemd", "unified") if (base / name / "cgroup.procs").exists()
    ]


def _remove_cgroup(path: Path) -> None:
    """Kill what is left in a cgroup tree, then remove it bottom-up."""
    if not path.exists():
        return
    for procs in path.rglob("cgroup.procs"):
        for pid in procs.read_text().split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    children = sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True)  # deepest first
    for directory in [*children, path]:
        while True:
            try:
                directory.rmdir()
                break
            except OSError:  # still busy with dying processes
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class UserManager:
    """A running ``systemd --user`` and the environment to reach it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runtime = root / "xdg"
        self.units = root / "config" / "systemd" / "user"
        self.bus = self.runtime / "bus"
        self.env = {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "XDG_CONFIG_HOME": str(root / "config"),
        }
        self.env.pop("DBUS_SESSION_BUS_ADDRESS", None)

    def systemctl(self, *args: str, check: bool = True) -> str:
        """systemctl --user against this manager."""
        result = subprocess.run(
            ["systemctl", "--user", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"systemctl --user {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def add_unit(self, name: str, text: str) -> None:
        """Write a unit file and make the manager read it."""
        (self.units / name).write_text(text)
        self.systemctl("daemon-reload")

    def main_pid(self, unit: str) -> int:
        """The unit's main process."""
        return int(self.systemctl("show", "-p", "MainPID", "--value", unit))


@contextmanager
def user_manager(root: Path) -> Iterator[UserManager]:
    """Start a user manager under ``root``; stop it and remove its cgroups afterwards."""
    require_user_manager()
    manager = UserManager(root)
    manager.runtime.mkdir(mode=0o700, parents=True)
    manager.units.mkdir(parents=True)
    name = f"anycast-evtest-{secrets.token_hex(3)}"
    cgroups = [base / name for base in _cgroup_roots()]
    for cgroup in cgroups:
        cgroup.mkdir()
    log = (root / "systemd.log").open("wb")
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", _LAUNCH, "sh"]
    proc = subprocess.Popen(
        [*argv, *map(str, cgroups)],
        env=manager.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        _wait_running(manager, proc)
        yield manager
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for cgroup in cgroups:
            _remove_cgroup(cgroup)


def _wait_running(manager: UserManager, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if manager.bus.exists():
            # not is-system-running: it answers "offline" when PID 1 is not systemd
            state = manager.systemctl("show", "-p", "SystemState", "--value", check=False)
            if state in ("running", "degraded"):
                return
        time.sleep(0.1)
    log = (manager.root / "systemd.log").read_text(errors="replace")[-2000:]
    raise AssertionError(
        f"systemd --user did not start (state {state!r}, exit {proc.poll()}): {log}"
    )
