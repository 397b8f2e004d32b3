"""Running the sidecar: wiring config, probes, driver, supervisor and HTTP; signals.

``run_sidecar`` is what ``anycast-announcer run`` calls. It builds the parts (the
prober, the netlink address book, the ExaBGP driver, the supervisor around the decision
core, the status API) inside one event loop, turns SIGTERM/SIGINT into a graceful stop
and SIGHUP into a reload, and maps start-up failures to an exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from anycast_announcer import __version__
from anycast_announcer.checks import Prober
from anycast_announcer.config import Config, config_warnings
from anycast_announcer.drainstate import load_drain_state
from anycast_announcer.exabgp.driver import (
    EndOfRibCallback,
    ExabgpDriver,
    RoutesCallback,
    SessionCallback,
)
from anycast_announcer.http import TokenFileError
from anycast_announcer.http.token import TokenKeeper
from anycast_announcer.localaddr import AddressError, NetlinkAddresses
from anycast_announcer.logging import configure_logging
from anycast_announcer.metrics import Metrics
from anycast_announcer.rescue.kernel import RescueError
from anycast_announcer.sdnotify import Notifier
from anycast_announcer.supervisor import Seams, Supervisor
from anycast_announcer.workers import Submit
from anycast_announcer.workers.detection import Detection

__all__ = ["StartupError", "Supervisor", "run_sidecar"]

log = structlog.get_logger("anycast_announcer")


def _learns_members(config: Config) -> bool:
    return config.rescue is not None and config.rescue.membership is not None


class StartupError(Exception):
    """The sidecar cannot start as configured (the message says why, for the operator)."""


HttpStarter = Callable[[Supervisor, TokenKeeper], contextlib.AbstractAsyncContextManager[Any]]


async def _serve(config: Config, config_path: str, http: HttpStarter, metrics: Metrics) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    systemd = Notifier()

    def on_stop() -> None:
        systemd.stopping()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop)
    # A bad state file is logged and set aside (drainstate): start-up goes on.
    path = config.drain.state_file
    restored = await asyncio.to_thread(load_drain_state, path) if path is not None else []

    tokens = TokenKeeper(config.http.token_file)

    def driver(
        on_session: SessionCallback, on_routes: RoutesCallback, on_end_of_rib: EndOfRibCallback
    ) -> ExabgpDriver:
        return ExabgpDriver(
            config.bgp,
            config.exabgp,
            on_session,
            on_restart=metrics.exabgp_restarted,
            on_connection=metrics.exabgp_changed,
            on_routes=on_routes,
            # Only membership's start-up gate waits for End-of-RIB, which costs advertising
            # graceful restart. Read at start: a reload that turns membership on opens the
            # gate at once, so it needs none (docs/rescue.md, "The start-up gate").
            on_end_of_rib=on_end_of_rib if _learns_members(config) else None,
        )

    def detection(submit: Submit) -> Detection:
        return Detection(submit, on_dismissed=lambda source: metrics.detection_event(source, False))

    async with NetlinkAddresses() as addresses, Prober() as prober:
        supervisor = Supervisor(
            config,
            Seams(prober, addresses, driver, detection),
            config_path=config_path,
            metrics=metrics,
            restored=restored,
            reload_checks=[tokens.reload],
        )
        # Scrapes read the BFD sessions from the supervisor's speaker when they happen.
        metrics.bfd_source(supervisor.bfd_reading)
        reloads: set[asyncio.Task[None]] = set()

        def on_hangup() -> None:
            # The loop keeps only weak references to tasks: hold this one until it is done.
            task = loop.create_task(_reload_on_signal(supervisor))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        log.info(
            "sidecar_started",
            version=__version__,
            services=len(config.services),
            prefixes=len(config.prefixes),
            peers=len(config.bgp.peers),
        )
        async with http(supervisor, tokens), _systemd_watchdog(systemd):
            systemd.ready()
            await supervisor.run(stop)
    log.info("sidecar_stopped")


@contextlib.asynccontextmanager
async def _systemd_watchdog(systemd: Notifier) -> AsyncIterator[None]:
    """Ping systemd's watchdog from the event loop, so a hung loop gets us restarted."""
    interval = systemd.watchdog_interval
    if interval is None:
        yield
        return

    async def ping() -> None:
        while True:
            systemd.watchdog()
            await asyncio.sleep(interval)

    task = asyncio.get_running_loop().create_task(ping())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reload_on_signal(supervisor: Supervisor) -> None:
    supervisor.submit(await supervisor.read_config(None))


def run_sidecar(
    config: Config,
    config_path: str,
    http: HttpStarter | None = None,
    metrics: Metrics | None = None,
) -> int:
    """Run the sidecar until SIGTERM/SIGINT; the process exit code.

    By default the status API (``http:``) and Prometheus metrics come with it.
    """
    configure_logging(config.logging.format, config.logging.level)
    log.info("config_loaded", path=config_path)
    for warning in config_warnings(config):
        log.warning("config_warning", warning=warning)
    if metrics is None:
        metrics = Metrics()
    if http is None:
        http = _http_starter(config, metrics)
    try:
        asyncio.run(_serve(config, config_path, http, metrics))
    except (AddressError, StartupError, TokenFileError, RescueError) as error:
        log.error("sidecar_failed", error=str(error))
        return 1
    except OSError as error:
        # At start-up: the API's port is taken, a socket path is in the way, no exabgp.
        log.error("sidecar_failed", error=str(error))
        return 1
    return 0


def _http_starter(config: Config, metrics: Metrics) -> HttpStarter:
    from anycast_announcer.http import serving

    def start(
        supervisor: Supervisor, tokens: TokenKeeper
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        return serving(supervisor, metrics, config.http, tokens)

    return start
