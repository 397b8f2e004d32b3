"""systemd's notification protocol (sd_notify), without libsystemd.

A service of ``Type=notify`` tells systemd it is ready (``READY=1``), stopping
(``STOPPING=1``) and, with ``WatchdogSec=``, still alive (``WATCHDOG=1``), as datagrams on
the unix socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace). systemd passes ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the process meant)
when the watchdog is on; a service pings at half that period, and systemd kills and
restarts it (``Restart=on-failure``) when a period passes without a ping. Outside systemd
there is no socket and every call is a no-op returning False.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "notify", "watchdog_interval"]


def _address(environ: Mapping[str, str]) -> str | bytes | None:
    name = environ.get("NOTIFY_SOCKET", "")
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode()  # Linux abstract namespace
    if name.startswith("/"):
        return name
    return None  # vsock addresses and the like are not for us


def notify(*states: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``states`` (``"READY=1"``, ...) to systemd; False when there is nobody to tell.

    Errors sending are swallowed (False): telling systemd is best effort, and a sidecar
    must not fall over because the notification socket went away.
    """
    address = _address(os.environ if environ is None else environ)
    if address is None or not states:
        return False
    payload = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError:
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings (half of WatchdogSec), or None when off.

    None as well when ``$WATCHDOG_PID`` names another process: the setting was meant for
    our parent (a wrapper script), not for us.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """The three messages the sidecar sends, bound to one environment (tests pass theirs)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)

    @property
    def enabled(self) -> bool:
        """Whether systemd listens ($NOTIFY_SOCKET is set)."""
        return _address(self._environ) is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings, or None when systemd's watchdog is off."""
        return watchdog_interval(self._environ)

    def ready(self, status: str | None = None) -> bool:
        """Start-up is done: routes may be announced from now on."""
        return notify("READY=1", *_status(status), environ=self._environ)

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began (withdrawing)."""
        return notify("STOPPING=1", *_status(status), environ=self._environ)

    def watchdog(self) -> bool:
        """Still alive: the event loop ran this."""
        return notify("WATCHDOG=1", environ=self._environ)


def _status(status: str | None) -> tuple[str, ...]:
    if status is None:
        return ()
    return ("STATUS=" + " ".join(status.split()),)
