"""Unit watch against a real systemd user manager and a real D-Bus bus."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from anycast_announcer.events.dbus import DBusConnection
from anycast_announcer.events.units import UnitStateChanged, UnitWatch, unit_path
from tests.integration.events.support import eventually
from tests.integration.events.systemd_user import UserManager, user_manager

pytestmark = pytest.mark.integration

SERVICE = "[Service]\nExecStart=/bin/sleep 600\n"
RESTARTING = "[Service]\nExecStart=/bin/sleep 600\nRestart=always\nRestartSec=200ms\n"
Watched = tuple[UnitWatch, list[UnitStateChanged]]


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserManager]:
    """One user manager for the module, with a plain and a self-restarting service."""
    with user_manager(tmp_path_factory.mktemp("systemd")) as running:
        running.add_unit("evsvc.service", SERVICE)
        running.add_unit("evother.service", SERVICE)
        running.add_unit("evrestart.service", RESTARTING)
        yield running


@pytest.fixture
async def unit_watch(manager: UserManager) -> AsyncIterator[Watched]:
    """A UnitWatch on the manager's bus; the test units stopped again afterwards."""
    seen: list[UnitStateChanged] = []
    watch = UnitWatch(seen.append, bus=str(manager.bus))
    await watch.open()
    try:
        yield watch, seen
    finally:
        watch.close()
        manager.systemctl("stop", "evsvc.service", "evother.service", "evrestart.service")
        manager.systemctl("reset-failed", check=False)


async def test_sigkill_of_the_main_process_is_a_failure(
    manager: UserManager, unit_watch: Watched
) -> None:
    """Main process killed, no restart configured: active -> failed, reported at once."""
    watch, seen = unit_watch
    manager.systemctl("start", "evsvc.service")
    await watch.watch(["evsvc.service"])
    assert watch.states == {"evsvc.service": "active"}
    os.kill(manager.main_pid("evsvc.service"), signal.SIGKILL)
    await eventually(lambda: seen, "no UnitStateChanged after SIGKILL")
    assert seen == [UnitStateChanged("evsvc.service", "active", "failed")]
    assert not seen[0].serving


async def test_a_stop_goes_through_deactivating(manager: UserManager, unit_watch: Watched) -> None:
    """systemctl stop: deactivating, then inactive, in that order."""
    watch, seen = unit_watch
    manager.systemctl("start", "evsvc.service")
    await watch.watch(["evsvc.service"])
    manager.systemctl("stop", "evsvc.service")
    await eventually(lambda: len(seen) == 2, "stop not reported as two changes")
    assert [(e.old, e.new) for e in seen] == [
        ("active", "deactivating"),
        ("deactivating", "inactive"),
    ]


async def test_an_automatic_restart_is_down_then_up(
    manager: UserManager, unit_watch: Watched
) -> None:
    """Restart=always: the kill shows as a state that does not serve, then active again."""
    watch, seen = unit_watch
    manager.systemctl("start", "evrestart.service")
    await watch.watch(["evrestart.service"])
    os.kill(manager.main_pid("evrestart.service"), signal.SIGKILL)
    await eventually(lambda: seen and seen[-1].serving, "the restart never came back to active")
    assert not seen[0].serving
    assert seen[0].old == "active"


async def test_other_units_are_not_reported(manager: UserManager, unit_watch: Watched) -> None:
    """Changes of an unwatched unit report nothing; the watched one is the canary."""
    watch, seen = unit_watch
    manager.systemctl("start", "evsvc.service")
    await watch.watch(["evsvc.service"])
    manager.systemctl("start", "evother.service")
    manager.systemctl("stop", "evother.service")
    manager.systemctl("stop", "evsvc.service")
    await eventually(lambda: len(seen) == 2, "the canary's stop was not reported")
    assert {event.unit for event in seen} == {"evsvc.service"}


async def test_unknown_unit_and_rewatching(manager: UserManager, unit_watch: Watched) -> None:
    """A unit that does not exist reads as inactive; unwatching stops its reports."""
    watch, seen = unit_watch
    await watch.watch(["no-such-unit.service", "evsvc.service"])
    assert watch.states == {"no-such-unit.service": "inactive", "evsvc.service": "inactive"}
    await watch.watch(["evother.service"])
    manager.systemctl("start", "evsvc.service")
    manager.systemctl("start", "evother.service")
    await eventually(lambda: seen, "the watched unit's start was not reported")
    assert {event.unit for event in seen} == {"evother.service"}


def test_bus_path_is_under_the_test_directory(manager: UserManager, tmp_path: Path) -> None:
    """The manager's bus is ours, not the host's."""
    assert manager.bus.is_socket()
    assert str(manager.bus).startswith(str(manager.root))


async def _forge_failure(manager: UserManager, target: str, unit: str) -> None:
    """Another client on the bus sends ``target`` a unicast PropertiesChanged: failed."""
    async with await DBusConnection.connect(str(manager.bus), lambda _: None) as forger:
        await forger.emit_signal(
            unit_path(unit),
            "org.freedesktop.DBus.Properties",
            "PropertiesChanged",
            "sa{sv}as",
            ("org.freedesktop.systemd1.Unit", {"ActiveState": ("s", "failed")}, []),
            destination=target,
        )
        # A round trip through the bus after the signal: the bus delivers in order.
        await forger.call(*_BUS, "GetId")


_BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")


async def test_a_forged_unit_signal_is_ignored(manager: UserManager, unit_watch: Watched) -> None:
    """Regression: any local client could make a watched unit "fail" with a unicast
    signal, which match rules do not filter; only systemd's unique name counts."""
    watch, seen = unit_watch
    manager.systemctl("start", "evsvc.service")
    await watch.watch(["evsvc.service"])
    await _forge_failure(manager, watch.unique_name, "evsvc.service")
    await eventually(lambda: watch.rejected, "the forged signal never arrived")
    assert seen == []
    assert watch.states == {"evsvc.service": "active"}
    manager.systemctl("stop", "evsvc.service")  # systemd's own signals still count
    await eventually(lambda: len(seen) == 2, "systemd's stop was not reported")


async def test_a_lost_bus_connection_is_reopened_and_missed_changes_reported(
    manager: UserManager, unit_watch: Watched
) -> None:
    """Regression: after the bus went away the watch reported nothing ever again.

    The bus really stops (socket unit and daemon), the unit stops while there is no
    bus, then the bus comes back: the watch reconnects by itself and reports the change
    it missed. Kept last: the other tests need the bus.
    """
    watch, seen = unit_watch
    manager.systemctl("start", "evsvc.service")
    await watch.watch(["evsvc.service"])
    try:
        manager.systemctl("stop", "dbus.socket", "dbus.service")
        await eventually(lambda: watch.lost, "the lost bus connection was not noticed")
        manager.systemctl("stop", "evsvc.service")
    finally:
        manager.systemctl("start", "dbus.socket")
    await eventually(lambda: not watch.lost, "never reconnected", timeout=30)
    await eventually(lambda: seen, "the stop missed while disconnected was not reported")
    assert seen == [UnitStateChanged("evsvc.service", "active", "inactive")]
    assert watch.reconnects == 1
    manager.systemctl("start", "evsvc.service")  # and signals flow again
    await eventually(lambda: len(seen) == 2, "a start after the reconnect was not reported")
    assert seen[-1].new in ("activating", "active")
