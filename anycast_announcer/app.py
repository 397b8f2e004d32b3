"""The supervisor: wires probes, the pure core and the ExaBGP driver together.

Data flows one way. Probe tasks, the address watcher and the driver's session callback
put inputs on one queue; the supervisor, the only owner of health state, applies each
input to the pure state machines, recomputes the desired routes with ``policy`` and
hands them to the driver, which owns everything about ExaBGP. Nothing reads back.

Shutdown (SIGTERM/SIGINT): withdraw everything, wait for ExaBGP's acks, remove addresses
we added, stop ExaBGP, exit 0, all within about two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from anycast_announcer.checks import Probe, Prober, ProbeResult
from anycast_announcer.config import Config, PrefixConfig, ServiceConfig
from anycast_announcer.exabgp.driver import ExabgpDriver
from anycast_announcer.health import Health, ServiceHealth
from anycast_announcer.localaddr import AddressBook, AddressError, NetlinkAddresses
from anycast_announcer.logging import configure_logging
from anycast_announcer.policy import PrefixDecision, decide_prefix, desired_routes

__all__ = ["Supervisor", "run_sidecar"]

log = structlog.get_logger("anycast_announcer")

ADDRESS_POLL_INTERVAL = 1.0
WITHDRAW_ACK_TIMEOUT = 1.2
"""Budget for ExaBGP to acknowledge the withdrawals at shutdown (the exit budget is 2 s)."""


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A probe finished."""

    service: str
    result: ProbeResult


@dataclass(frozen=True, slots=True)
class SessionChange:
    """A BGP session went up or down."""

    peer: str
    up: bool


@dataclass(frozen=True, slots=True)
class AddressChange:
    """A prefix's address appeared on or left its interface."""

    prefix: str
    present: bool


Input = ProbeOutcome | SessionChange | AddressChange


class Supervisor:
    """Owns health state and decisions; the single consumer of the input queue."""

    def __init__(
        self,
        config: Config,
        probe: Probe,
        addresses: AddressBook,
        driver_factory: Callable[[Callable[[str, bool, str], None]], ExabgpDriver],
    ) -> None:
        self.config = config
        self._probe = probe
        self._addresses = addresses
        self._inputs: asyncio.Queue[Input] = asyncio.Queue()
        self.driver = driver_factory(self._on_session)
        self.health = {
            service.name: ServiceHealth(service.name, service.rise, service.fall)
            for service in config.services
        }
        self.last_results: dict[str, ProbeResult] = {}
        self.address_present: dict[str, bool] = {}
        self.sessions_up: set[str] = set()
        self.decisions: dict[str, PrefixDecision] = {}
        self._added_addresses: list[PrefixConfig] = []

    # -- inputs ----------------------------------------------------------------------

    def _on_session(self, peer: str, up: bool, reason: str) -> None:
        self._inputs.put_nowait(SessionChange(peer, up))

    async def _probe_loop(self, service: ServiceConfig, offset: float) -> None:
        """Probe on a fixed schedule; a late probe skips missed slots instead of bursting."""
        loop = asyncio.get_running_loop()
        due = loop.time() + offset
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result = await self._probe.probe(service.check, service.timeout)
            self._inputs.put_nowait(ProbeOutcome(service.name, result))
            due += service.interval
            now = loop.time()
            if due < now:
                due += service.interval * ((now - due) // service.interval + 1)

    async def _address_loop(self) -> None:
        while True:
            for prefix in self.config.prefixes:
                name = str(prefix.prefix)
                present = await self._addresses.present(prefix.interface, prefix.prefix)
                if self.address_present.get(name) != present:
                    self._inputs.put_nowait(AddressChange(name, present))
            await asyncio.sleep(ADDRESS_POLL_INTERVAL)

    # -- the decision step -----------------------------------------------------------

    def apply(self, item: Input) -> None:
        """Apply one input to the state machines, then recompute the desired routes."""
        if isinstance(item, ProbeOutcome):
            self.last_results[item.service] = item.result
            change = self.health[item.service].observe(item.result.ok, item.result.reason)
            if change is None:
                return
            log.info("service_state_changed", service=change.service, old=change.old.value,
                     new=change.new.value, reason=change.reason)
        elif isinstance(item, SessionChange):
            if item.up:
                self.sessions_up.add(item.peer)
            else:
                self.sessions_up.discard(item.peer)
        else:
            self.address_present[item.prefix] = item.present
            log.info("address_changed", prefix=item.prefix, present=item.present)
        self._recompute()

    def _recompute(self) -> None:
        states = {name: machine.state for name, machine in self.health.items()}
        for prefix in self.config.prefixes:
            name = str(prefix.prefix)
            decision = decide_prefix(prefix, states, self.address_present.get(name, False))
            previous = self.decisions.get(name)
            if previous is None or previous.announce != decision.announce:
                log.info(
                    "prefix_state_changed", prefix=name,
                    old=_prefix_state(previous), new=_prefix_state(decision),
                    reason=decision.reason,
                )
            self.decisions[name] = decision
        self.driver.set_desired(desired_routes(self.config, self.decisions, self.sessions_up))

    def health_states(self) -> dict[str, Health]:
        """Each service's current state."""
        return {name: machine.state for name, machine in self.health.items()}

    # -- lifecycle -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; always withdraws before returning."""
        await self._add_managed_addresses()
        self._recompute()  # everything starts withdrawn, and says so in the log
        loop = asyncio.get_running_loop()
        background: list[asyncio.Task[None]] = []
        driver_task = loop.create_task(self.driver.run())
        try:
            count = len(self.config.services)
            for index, service in enumerate(self.config.services):
                # Spread the first probes over a tenth of the interval: 500 services must
                # not all connect in the same millisecond, but start-up must stay quick.
                offset = service.interval * 0.1 * index / max(count, 1)
                background.append(loop.create_task(self._probe_loop(service, offset)))
            background.append(loop.create_task(self._address_loop()))
            stopping = loop.create_task(stop.wait())
            while not stop.is_set():
                getting = loop.create_task(self._inputs.get())
                done, _ = await asyncio.wait(
                    {getting, stopping, driver_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting in done:
                    self.apply(getting.result())
                else:
                    getting.cancel()
                if driver_task in done:
                    driver_task.result()  # a bug in the driver: surface it
                    raise RuntimeError("the ExaBGP driver stopped unexpectedly")
            stopping.cancel()
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await asyncio.shield(self._withdraw_and_stop(driver_task))

    async def _withdraw_and_stop(self, driver_task: asyncio.Task[None]) -> None:
        self.decisions = {
            name: PrefixDecision(name, False, "shutting down") for name in self.decisions
        }
        self.driver.set_desired({})
        synced = True
        try:
            async with asyncio.timeout(WITHDRAW_ACK_TIMEOUT):
                await self.driver.wait_synced()
        except TimeoutError:
            synced = False
        log.info("withdrawn_all", acknowledged=synced)
        if synced:
            await self._remove_managed_addresses()
        else:
            log.warning("managed_addresses_kept", reason="withdrawal not acknowledged")
        await self.driver.stop()
        driver_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver_task

    async def _add_managed_addresses(self) -> None:
        for prefix in self.config.prefixes:
            if prefix.manage_address and not await self._addresses.present(
                prefix.interface, prefix.prefix
            ):
                await self._addresses.add(prefix.interface, prefix.prefix)
                self._added_addresses.append(prefix)
                log.info("address_added", prefix=str(prefix.prefix), interface=prefix.interface)

    async def _remove_managed_addresses(self) -> None:
        for prefix in self._added_addresses:
            try:
                await self._addresses.remove(prefix.interface, prefix.prefix)
            except AddressError as error:
                log.error("address_remove_failed", prefix=str(prefix.prefix), error=str(error))
            else:
                log.info("address_removed", prefix=str(prefix.prefix),
                         interface=prefix.interface)
        self._added_addresses.clear()


def _prefix_state(decision: PrefixDecision | None) -> str:
    if decision is None:
        return "unknown"
    return "announced" if decision.announce else "withdrawn"


async def _serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with NetlinkAddresses() as addresses, Prober() as prober:
        supervisor = Supervisor(
            config,
            prober,
            addresses,
            lambda on_session: ExabgpDriver(config.bgp, config.exabgp, on_session),
        )
        log.info("sidecar_started", services=len(config.services),
                 prefixes=len(config.prefixes), peers=len(config.bgp.peers))
        await supervisor.run(stop)
    log.info("sidecar_stopped")


def run_sidecar(config: Config, config_path: str) -> int:
    """Run the sidecar until SIGTERM/SIGINT; the process exit code."""
    configure_logging(config.logging.format, config.logging.level)
    log.info("config_loaded", path=config_path)
    try:
        asyncio.run(_serve(config))
    except AddressError as error:
        log.error("sidecar_failed", error=str(error))
        return 1
    except FileNotFoundError as error:
        log.error("sidecar_failed", error=str(error))
        return 1
    return 0
