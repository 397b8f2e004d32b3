"""The kernel and system event sources, turned into core inputs.

Every configured anycast address is watched over rtnetlink (one socket for all of
them, with a periodic full dump as a backstop); the listening socket of every tcp and
http(s) check that targets a local address literal is watched over sock_diag destroy
events, filtered in the kernel; a service's ``pid_file`` is watched with a pidfd and its
``systemd_unit`` over D-Bus. What they report becomes ``AddressChanged`` or
``ServiceFailed``; deciding what that means is the core's business.

A source that cannot start (no D-Bus socket, say) is logged and left out: the probes
still find every failure, only later.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import structlog

from anycast_announcer.config import Config, ServiceConfig
from anycast_announcer.core.inputs import AddressChanged, IPAddress, ServiceFailed
from anycast_announcer.endpoints import check_endpoint
from anycast_announcer.events.addresses import AddressEvent, AddressWatch
from anycast_announcer.events.dbus import DBusError
from anycast_announcer.events.listeners import ListenerGone, ListenerWatch
from anycast_announcer.events.processes import PidFileWatch, ProcessExited
from anycast_announcer.events.rtnl import Interest
from anycast_announcer.events.sockdiag import MAX_FILTER_PORTS, ListenTarget
from anycast_announcer.events.units import UnitStateChanged, UnitWatch
from anycast_announcer.workers import Submit

__all__ = ["Detection", "listen_target", "watchable"]

log = structlog.get_logger("anycast_announcer")


class Detection:
    """Owns the watchers; ``configure`` follows the config at start and on every reload."""

    def __init__(self, submit: Submit, on_dismissed: Callable[[str], None] | None = None) -> None:
        self._submit = submit
        self._on_dismissed = on_dismissed
        self._addresses: AddressWatch | None = None
        self._listeners = ListenerWatch(self._listener_gone, self._listener_dismissed)
        self._by_target: dict[ListenTarget, tuple[str, ...]] = {}
        self._processes: dict[str, PidFileWatch] = {}
        self._units: UnitWatch | None = None
        self._by_unit: dict[str, tuple[str, ...]] = {}

    async def open(self, config: Config) -> None:
        """Start every source the configuration needs and report the addresses' state."""
        self._addresses = AddressWatch(
            self._address_changed, config.detection.address_resync_interval
        )
        await self._addresses.open()
        self._listeners.open()
        await self.configure(config)

    async def configure(self, config: Config) -> None:
        """Watch what ``config`` asks for; report the current state of every address."""
        self._watch_addresses(config)
        self._watch_listeners(config.services)
        self._watch_processes(config.services)
        await self._watch_units(config)

    def close(self) -> None:
        """Stop every source."""
        if self._addresses is not None:
            self._addresses.close()
        self._listeners.close()
        for watch in self._processes.values():
            watch.close()
        self._processes.clear()
        if self._units is not None:
            self._units.close()
            self._units = None

    # -- addresses ---------------------------------------------------------------------

    def _watch_addresses(self, config: Config) -> None:
        assert self._addresses is not None  # opened first
        interests = {
            Interest(prefix.interface, prefix.prefix.network_address) for prefix in config.prefixes
        }
        self._addresses.watch(interests)
        for interest in sorted(interests, key=str):
            present = self._addresses.present(
                interest.interface, ipaddress.ip_network(interest.address)
            )
            self._submit(AddressChanged(interest.interface, interest.address, present))

    def _address_changed(self, event: AddressEvent) -> None:
        self._submit(AddressChanged(event.interface, event.address, event.present))

    # -- listeners ---------------------------------------------------------------------

    def _watch_listeners(self, services: Iterable[ServiceConfig]) -> None:
        by_target: dict[ListenTarget, list[str]] = {}
        for service in services:
            target = listen_target(service) if service.listener_events else None
            if target is not None and _is_local(target.address):
                by_target.setdefault(target, []).append(service.name)
        self._by_target, unwatched = watchable(
            {target: tuple(names) for target, names in by_target.items()}
        )
        if unwatched:
            log.warning(
                "listener_watch_limited",
                max_ports=MAX_FILTER_PORTS,
                unwatched_services=len(unwatched),
                first_unwatched=unwatched[:5],
            )
        self._listeners.watch(self._by_target)
        log.info("listener_watch", targets=sorted(str(t) for t in self._by_target))

    def _listener_gone(self, event: ListenerGone) -> None:
        for service in self._by_target.get(event.target, ()):
            self._submit(ServiceFailed(service, "listener", f"listener closed: {event.target}"))

    def _listener_dismissed(self, target: ListenTarget) -> None:
        if self._on_dismissed is not None:
            self._on_dismissed("listener")

    # -- processes and units -----------------------------------------------------------

    def _watch_processes(self, services: Iterable[ServiceConfig]) -> None:
        wanted = {s.name: s.pid_file for s in services if s.pid_file is not None}
        for name, watch in list(self._processes.items()):
            if wanted.get(name) != str(watch.pid_file):
                watch.close()
                del self._processes[name]
        for name, path in wanted.items():
            if name not in self._processes:
                watch = PidFileWatch(Path(path), self._process_exited(name))
                watch.open()
                self._processes[name] = watch

    def _process_exited(self, service: str) -> Callable[[ProcessExited], None]:
        def exited(event: ProcessExited) -> None:
            self._submit(ServiceFailed(service, "process", f"process exited: pid {event.pid}"))

        return exited

    async def _watch_units(self, config: Config) -> None:
        by_unit: dict[str, list[str]] = {}
        for service in config.services:
            if service.systemd_unit is not None:
                by_unit.setdefault(service.systemd_unit, []).append(service.name)
        self._by_unit = {unit: tuple(names) for unit, names in by_unit.items()}
        if not self._by_unit and self._units is None:
            return
        try:
            if self._units is None:
                self._units = UnitWatch(self._unit_changed, config.detection.systemd_bus)
                await self._units.open()
            await self._units.watch(self._by_unit)
        except (OSError, ConnectionError, ValueError, DBusError) as error:
            log.warning("unit_watch_unavailable", error=str(error), units=sorted(self._by_unit))
            if self._units is not None:
                self._units.close()
                self._units = None

    def _unit_changed(self, event: UnitStateChanged) -> None:
        if event.serving:
            return
        for service in self._by_unit.get(event.unit, ()):
            self._submit(ServiceFailed(service, "unit", f"unit {event.new}"))


def watchable(
    by_target: Mapping[ListenTarget, tuple[str, ...]], max_ports: int = MAX_FILTER_PORTS
) -> tuple[dict[ListenTarget, tuple[str, ...]], list[str]]:
    """The targets on the ``max_ports`` lowest ports, and the services left out.

    The kernel filter holds a bounded number of ports (BPF_MAXINSNS). Services beyond it
    are left to their probes, which find the same failures later, rather than failing
    start-up or a reload for a configuration that polling alone serves.
    """
    ports = sorted({target.port for target in by_target})
    if len(ports) <= max_ports:
        return dict(by_target), []
    kept = set(ports[:max_ports])
    watched = {t: names for t, names in by_target.items() if t.port in kept}
    unwatched = sorted(
        name for t, names in by_target.items() if t.port not in kept for name in names
    )
    return watched, unwatched


def listen_target(service: ServiceConfig) -> ListenTarget | None:
    """The address and port a tcp or http(s) check's service listens on, when the check
    names an address literal (a name may resolve to several addresses: not watched)."""
    endpoint = check_endpoint(service.check)
    if endpoint is None:
        return None
    host, port = endpoint
    try:
        address: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ListenTarget(address, port)


def _is_local(address: IPAddress) -> bool:
    """Whether a socket could listen on ``address`` here (a local address or a wildcard).

    A target elsewhere has no local listener to watch: a destroy on the same port would
    only ever find it unserved.
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as error:
            if error.errno != errno.EADDRNOTAVAIL:
                log.warning("listener_target_unchecked", address=str(address), error=str(error))
            return False
    return True
