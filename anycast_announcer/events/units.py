"""systemd unit watch: a unit's ActiveState, pushed by systemd over D-Bus.

Theory of operation: the watch connects to the bus (the system bus by default), calls
``org.freedesktop.systemd1.Manager.Subscribe`` (systemd sends unit signals on a bus only
while some client is subscribed; the subscription ends with our connection), and for each
watched unit adds a match for ``PropertiesChanged`` of the ``org.freedesktop.systemd1.Unit``
interface on the unit's object path. It reads the current ActiveState once, then follows
the signals and reports every change of ActiveState as a :class:`UnitStateChanged`. A
unit is *serving* while its state is ``active`` or ``reloading``; ``failed``,
``deactivating``, ``inactive`` and ``activating`` (a restart in progress) are not.

If the bus connection is lost (the bus restarted), the watch says so in :attr:`lost` and
reports nothing more; its owner reopens it (the probes cover the gap).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import structlog

from anycast_announcer.events.dbus import DBusConnection, DBusMessage

__all__ = ["SYSTEM_BUS", "UnitStateChanged", "UnitWatch", "serving_state", "unit_path"]

log = structlog.get_logger("anycast_announcer.events")

SYSTEM_BUS = "/run/dbus/system_bus_socket"
_SYSTEMD = "org.freedesktop.systemd1"
_UNIT_IFACE = "org.freedesktop.systemd1.Unit"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")


def unit_path(unit: str) -> str:
    """systemd's object path for a unit name (bus_label_escape: _xx for other bytes)."""
    if not unit:
        return "/org/freedesktop/systemd1/unit/_"
    escaped = "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalpha() or (chr(b).isdigit() and i > 0))
        else f"_{b:02x}"
        for i, b in enumerate(unit.encode())
    )  # fmt: skip
    return f"/org/freedesktop/systemd1/unit/{escaped}"


def serving_state(active_state: str) -> bool:
    """Whether a unit in ``active_state`` runs its service."""
    return active_state in ("active", "reloading")


@dataclass(frozen=True, slots=True)
class UnitStateChanged:
    """A watched unit's ActiveState changed from ``old`` to ``new``."""

    unit: str
    old: str
    new: str

    @property
    def serving(self) -> bool:
        """Whether the unit runs its service in the new state."""
        return serving_state(self.new)


def _match(path: str) -> str:
    return (
        f"type='signal',sender='{_SYSTEMD}',path='{path}',interface='{_PROPERTIES}',"
        f"member='PropertiesChanged',arg0='{_UNIT_IFACE}'"
    )


class UnitWatch:
    """Reports :class:`UnitStateChanged` to ``on_change`` for the watched units."""

    def __init__(
        self, on_change: Callable[[UnitStateChanged], None], bus: str = SYSTEM_BUS
    ) -> None:
        self._on_change = on_change
        self._bus = bus
        self._connection: DBusConnection | None = None
        self._units: dict[str, str] = {}  # object path -> unit name
        self._states: dict[str, str] = {}  # unit name -> last ActiveState
        self.signals = 0
        self.lost = False

    async def open(self) -> None:
        """Connect, authenticate and subscribe to systemd's signals."""
        if self._connection is not None:
            return
        self._connection = await DBusConnection.connect(self._bus, self._signal, self._lost)
        await self._manager("Subscribe")

    def close(self) -> None:
        """Close the connection (which also ends the subscription and the matches)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def __aenter__(self) -> UnitWatch:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def states(self) -> dict[str, str]:
        """The last known ActiveState of every watched unit."""
        return dict(self._states)

    async def watch(self, units: Iterable[str]) -> None:
        """Watch exactly ``units`` from now on; read the current state of new ones."""
        wanted = set(units)
        for unit in sorted(set(self._states) - wanted):
            await self._bus_call("RemoveMatch", _match(unit_path(unit)))
            self._units.pop(unit_path(unit), None)
            self._states.pop(unit, None)
        for unit in sorted(wanted - set(self._states)):
            path = unit_path(unit)
            self._units[path] = unit
            await self._bus_call("AddMatch", _match(path))
            self._states[unit] = await self.active_state(unit)

    async def active_state(self, unit: str) -> str:
        """The unit's ActiveState now, asked of systemd (loads the unit if need be)."""
        connection = self._require()
        (state,) = await connection.call(
            _SYSTEMD, unit_path(unit), _PROPERTIES, "Get", "ss", (_UNIT_IFACE, "ActiveState")
        )
        return str(state)

    def _require(self) -> DBusConnection:
        if self._connection is None:
            raise RuntimeError("UnitWatch is not open")
        return self._connection

    async def _manager(self, member: str) -> None:
        await self._require().call(
            _SYSTEMD, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", member
        )

    async def _bus_call(self, member: str, rule: str) -> None:
        await self._require().call(*_BUS, member, "s", (rule,))

    def _signal(self, message: DBusMessage) -> None:
        unit = self._units.get(message.path or "")
        if unit is None or message.member != "PropertiesChanged" or len(message.body) < 2:
            return
        interface, changed = message.body[0], message.body[1]
        if interface != _UNIT_IFACE or not isinstance(changed, dict):
            return
        self.signals += 1
        if "ActiveState" in changed:
            self._update(unit, str(changed["ActiveState"]))
        elif "ActiveState" in (message.body[2] if len(message.body) > 2 else ()):
            # Invalidated without a value: ask for it.
            asyncio.get_running_loop().create_task(self._refresh(unit))

    async def _refresh(self, unit: str) -> None:
        self._update(unit, await self.active_state(unit))

    def _update(self, unit: str, new: str) -> None:
        old = self._states.get(unit)
        if old is None or old == new:
            return
        self._states[unit] = new
        log.info("unit_state_changed", unit=unit, old=old, new=new)
        self._on_change(UnitStateChanged(unit, old, new))

    def _lost(self) -> None:
        self.lost = True
        log.warning("unit_watch_bus_lost", bus=self._bus)
