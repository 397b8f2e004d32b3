"""A real systemd system manager (PID 1 of its own namespaces) for the shipped unit's test.

The machine need not run systemd. systemd runs as PID 1 of a new PID namespace, chrooted
into an overlay of the host's root whose upper layer is a tmpfs: everything it writes at
boot (tmpfiles cleaning /tmp, sysusers, the journal, the state directory) lands in that
tmpfs and vanishes with it, never on the host. It also gets its own network, UTS, IPC and
cgroup namespaces (a cgroup2 subtree made for the run), a minimal /dev, and /sys and
/proc/sys read-only, and the units that would touch the shared kernel anyway (modules,
udev, sysctl, binfmt, the clock) are masked.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.prerequisites import unavailable

__all__ = ["SystemManager", "require_system_manager", "system_manager"]

SYSTEMD = Path("/lib/systemd/systemd")
_BOOT_TIMEOUT = 60.0

# Units masked in the guest: they act on the kernel every namespace shares, are
# pointless without a real network, or would start the host's periodic jobs.
MASKED = (
    "timers.target",
    "systemd-modules-load.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-hwdb-update.service",
    "systemd-timesyncd.service",
    "systemd-remount-fs.service",
    "networking.service",
    "ifupdown-wait-online.service",
    "systemd-networkd-wait-online.service",
    "NetworkManager-wait-online.service",
)

# Stage 1, in a private mount namespace: a cgroup2 subtree of our own, then the other
# namespaces with this shell's child as their PID 1.
_STAGE1 = """
set -eu
T=$1 NAME=$2
mkdir -p "$T/cg" && mount -t cgroup2 cgroup2 "$T/cg"
mkdir "$T/cg/$NAME" && echo $$ > "$T/cg/$NAME/cgroup.procs"
exec unshare --pid --fork --cgroup --net --uts --ipc /bin/bash -c "$3" stage2 "$T"
"""

# Stage 2, PID 1 of the new namespaces: the guest root, then systemd in it.
_STAGE2 = """
set -eu
T=$1 M=$1/merged
mount -t tmpfs -o mode=755 anycast-test-layer "$T/layer"
mkdir "$T/layer/upper" "$T/layer/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/layer/upper,workdir=$T/layer/work" "$M"
mount -t proc proc "$M/proc"
mount --bind "$M/proc/sys" "$M/proc/sys" && mount -o remount,bind,ro "$M/proc/sys"
mount -t sysfs -o ro sysfs "$M/sys"
mount -t cgroup2 cgroup2 "$M/sys/fs/cgroup"
mount -t tmpfs -o mode=755 anycast-test-dev "$M/dev"
for node in null zero full random urandom tty; do
    touch "$M/dev/$node" && mount --bind "/dev/$node" "$M/dev/$node"
done
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$M/dev/pts" && ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs anycast-test-shm "$M/dev/shm"
mount -t tmpfs -o mode=755 anycast-test-run "$M/run"
mount -t tmpfs -o mode=1777 anycast-test-tmp "$M/tmp"
cp -a "$T/seed/." "$M/"
chroot "$M" /bin/sh /seed-setup.sh
exec chroot "$M" /usr/bin/env -i container=anycast-test \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=anycast-test.target \
    --log-target=console --log-level=notice --show-status=no
"""

_NSENTER = ("nsenter", "--mount", "--net", "--pid", "--uts", "--ipc", "--root", "--wd")
_UNSHARE = ("unshare", "--mount", "--propagation", "private", "/bin/bash", "-c")

_TARGET = """[Unit]
Description=anycast-announcer test boot
Wants={units}
"""


def require_system_manager() -> None:
    """Skip unless root with systemd, unshare and nsenter; in CI, fail instead."""
    if os.geteuid() != 0:
        unavailable("the systemd unit test needs root (namespaces, overlayfs, cgroups)")
    if not SYSTEMD.exists() or not (shutil.which("unshare") and shutil.which("nsenter")):
        unavailable("the systemd unit test needs systemd and util-linux: run `make test-deps`")


class SystemManager:
    """The guest's PID 1; commands run inside its namespaces and root."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.pid = self._guest_init()

    def _guest_init(self) -> int:
        """The PID (seen from here) of the guest's systemd: the child of our process (by
        then ``unshare --pid --fork``) that lives in another PID namespace."""
        ours = os.readlink("/proc/self/ns/pid")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            for children in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
                for pid in children.read_text().split():
                    with suppress(OSError):
                        if os.readlink(f"/proc/{pid}/ns/pid") != ours:
                            return int(pid)
            time.sleep(0.05)
        raise AssertionError(f"the guest's systemd did not start:\n{self.log_tail()}")

    def run(
        self, argv: Sequence[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the guest (its mount, PID and network namespaces and root)."""
        return subprocess.run(
            [*_NSENTER, f"--target={self.pid}", *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check)

    def journal(self, unit: str) -> str:
        return self.run(["journalctl", "--no-pager", "-o", "cat", "-u", unit], check=False).stdout

    def wait_active(self, unit: str, timeout: float = _BOOT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            result = self.systemctl("is-active", unit, check=False)
            state = result.stdout.strip() or result.stderr.strip()
            if state == "active":
                return
            if state == "failed":
                break
            time.sleep(0.2)
        status = self.systemctl("status", unit, check=False).stdout
        raise AssertionError(
            f"{unit} is {state!r}:\n{status}\n{self.journal(unit)[-3000:]}\n"
            f"systemd's console:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _cleanup_cgroup(tmp: Path, name: str) -> None:
    """Remove the run's cgroup2 subtree (empty once PID 1 is gone), deepest first."""
    script = (
        'mount -t cgroup2 cgroup2 "$1/cg" && for i in $(seq 50); do '
        'find "$1/cg/$2" -depth -type d -exec rmdir {} + 2>/dev/null; '
        '[ -d "$1/cg/$2" ] || exit 0; sleep 0.1; done; exit 1'
    )
    subprocess.run(["unshare", "--mount", "sh", "-c", script, "cg", str(tmp), name], check=False)


@contextmanager
def system_manager(tmp: Path, seed: Path, units: Sequence[str]) -> Iterator[SystemManager]:
    """Boot systemd in a guest whose root is the host's plus ``seed`` (copied on top, then
    its ``/seed-setup.sh`` run), starting ``units``; stop it and remove every trace."""
    systemd_dir = seed / "etc" / "systemd" / "system"
    systemd_dir.mkdir(parents=True, exist_ok=True)
    for unit in MASKED:
        (systemd_dir / unit).symlink_to("/dev/null")
    (systemd_dir / "anycast-test.target").write_text(_TARGET.format(units=" ".join(units)))
    for directory in ("layer", "merged", "cg"):
        (tmp / directory).mkdir()
    name = f"anycast-test-{secrets.token_hex(4)}"
    log = tmp / "systemd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*_UNSHARE, _STAGE1, "stage1", str(tmp), name, _STAGE2],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield SystemManager(process, log)
    finally:
        # SIGKILL to a PID namespace's init kills every process in it; the mounts go with
        # the last one, and the overlay's tmpfs with them.
        if process.poll() is None:
            with suppress(AssertionError, ProcessLookupError):
                os.kill(SystemManager(process, log).pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
            process.wait()
        _cleanup_cgroup(tmp, name)
