"""systemd unit watch: a unit's ActiveState, pushed by systemd over D-Bus.

Theory of operation: the watch connects to the bus (the system bus by default), calls
``org.freedesktop.systemd1.Manager.Subscribe`` (systemd sends unit signals on a bus only
while some client is subscribed; the subscription ends with our connection), and for each
watched unit adds a match for ``PropertiesChanged`` of the ``org.freedesktop.systemd1.Unit``
interface on the unit's object path. It reads the current ActiveState once, then follows
the signals and reports every change of ActiveState as a :class:`UnitStateChanged`. A
unit is *serving* while its state is ``active`` or ``reloading``; ``failed``,
``deactivating``, ``inactive`` and ``activating`` (a restart in progress) are not.

Only systemd may report a change. Match rules filter broadcast signals, but a unicast
signal reaches its destination whatever the rules say, and the bus lets any client
send one: so every PropertiesChanged must come from the unique name that owns
``org.freedesktop.systemd1`` (asked with GetNameOwner, and followed through
NameOwnerChanged when systemd re-executes or reconnects); anything else is counted in
:attr:`rejected`, logged, and dropped.

If the bus connection is lost (the bus restarted), :attr:`lost` is true and the watch
reconnects by itself, backing off from ``RECONNECT_DELAY`` to ``RECONNECT_DELAY_MAX``;
once back, it re-subscribes and reads every watched unit's state again, reporting what
changed while it was away (the probes cover the gap meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

import structlog

from anycast_announcer.events.dbus import DBusConnection, DBusError, DBusMessage
from anycast_announcer.tasks import BackgroundTasks

__all__ = [
    "RECONNECT_DELAY",
    "RECONNECT_DELAY_MAX",
    "SYSTEM_BUS",
    "UnitStateChanged",
    "UnitWatch",
    "serving_state",
    "unit_path",
]

log = structlog.get_logger("anycast_announcer.events")

SYSTEM_BUS = "/run/dbus/system_bus_socket"
_SYSTEMD = "org.freedesktop.systemd1"
_UNIT_IFACE = "org.freedesktop.systemd1.Unit"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
_OWNER_MATCH = (
    "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
    f"interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{_SYSTEMD}'"
)
RECONNECT_DELAY = 0.2
"""Seconds before the first attempt to reopen a lost bus connection (then doubling)."""
RECONNECT_DELAY_MAX = 5.0
_BUS_ERRORS = (OSError, ConnectionError, DBusError, TimeoutError)


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
        self._owner: str | None = None  # systemd's unique name on the bus
        self._tasks = BackgroundTasks("unit_watch_task_failed")
        self.signals = 0
        self.rejected = 0
        """Unit signals dropped because systemd did not send them (forged or stale)."""
        self.reconnects = 0
        self.lost = False

    async def open(self) -> None:
        """Connect, authenticate and subscribe to systemd's signals."""
        if self._connection is not None:
            return
        await self._connect()

    def close(self) -> None:
        """Close the connection (which also ends the subscription and the matches)."""
        self._tasks.cancel()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    @property
    def unique_name(self) -> str:
        """This watch's own name on the bus ("" when not connected)."""
        return self._connection.unique_name if self._connection is not None else ""

    async def _connect(self) -> None:
        """Connect, learn who systemd is, subscribe, and match every watched unit."""
        connection = await DBusConnection.connect(self._bus, self._signal, self._lost)
        self._connection = connection
        try:
            # The owner match before asking, so a change in between is not missed.
            await self._bus_call("AddMatch", _OWNER_MATCH)
            try:
                (owner,) = await connection.call(*_BUS, "GetNameOwner", "s", (_SYSTEMD,))
            except DBusError:  # NameHasNoOwner: systemd is not on this bus (yet)
                owner = None
            self._owner = str(owner) if owner else None
            for path in sorted(self._units):
                await self._bus_call("AddMatch", _match(path))
            if self._owner is not None:
                await self._subscribe()
        except BaseException:
            connection.close()
            self._connection = None
            raise

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
        if self._connection is None and self.lost:
            # Reconnecting: the matches and states are set up once the bus is back.
            self._units = {unit_path(unit): unit for unit in wanted}
            self._states = {unit: self._states.get(unit, "unknown") for unit in wanted}
            return
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

    async def _subscribe(self) -> None:
        """Ask systemd for its signals; being subscribed already is the goal reached.

        Both the connect and a NameOwnerChanged that names systemd subscribe: when
        systemd appears on the bus while we connect, both run, and the second is told
        AlreadySubscribed.
        """
        try:
            await self._manager("Subscribe")
        except DBusError as error:
            if error.name != "org.freedesktop.systemd1.AlreadySubscribed":
                raise

    async def _manager(self, member: str) -> None:
        await self._require().call(
            _SYSTEMD, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", member
        )

    async def _bus_call(self, member: str, rule: str) -> None:
        await self._require().call(*_BUS, member, "s", (rule,))

    def _signal(self, message: DBusMessage) -> None:
        if message.member == "NameOwnerChanged" and message.sender == _BUS[0]:
            self._owner_changed(message)
            return
        unit = self._units.get(message.path or "")
        if unit is None or message.member != "PropertiesChanged" or len(message.body) < 2:
            return
        if self._owner is None or message.sender != self._owner:
            self.rejected += 1
            log.warning(
                "unit_signal_rejected", unit=unit, sender=message.sender, systemd=self._owner
            )
            return
        interface, changed = message.body[0], message.body[1]
        if interface != _UNIT_IFACE or not isinstance(changed, dict):
            return
        self.signals += 1
        if "ActiveState" in changed:
            self._update(unit, str(changed["ActiveState"]))
        elif "ActiveState" in (message.body[2] if len(message.body) > 2 else ()):
            # Invalidated without a value: ask for it.
            self._tasks.spawn(self._refresh(unit))

    def _owner_changed(self, message: DBusMessage) -> None:
        if len(message.body) < 3 or message.body[0] != _SYSTEMD:
            return
        new = str(message.body[2]) or None
        log.info("systemd_owner_changed", old=self._owner, new=new)
        self._owner = new
        if new is not None:
            # A new systemd (re-executed, or back on a restarted bus): subscribe again
            # and read what changed while no one could tell us.
            self._tasks.spawn(self._resync())

    async def _resync(self) -> None:
        await self._subscribe()
        for unit in sorted(self._states):
            await self._refresh(unit)

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
        self._owner = None
        log.warning("unit_watch_bus_lost", bus=self._bus)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._tasks.spawn(self._reopen())

    async def _reopen(self) -> None:
        """Reconnect with backoff, then report what changed while disconnected."""
        delay = RECONNECT_DELAY
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
                for unit in sorted(self._states):
                    if self._owner is not None:
                        await self._refresh(unit)
            except _BUS_ERRORS as error:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
                log.info("unit_watch_reconnect_failed", bus=self._bus, error=str(error))
                delay = min(delay * 2, RECONNECT_DELAY_MAX)
                continue
            self.lost = False
            self.reconnects += 1
            log.info("unit_watch_reconnected", bus=self._bus, systemd=self._owner)
            return
