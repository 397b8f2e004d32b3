"""The ExaBGP process driver: the asyncio shell around ExaBGP.

It owns the ExaBGP child process, the API connection to it and the restart backoff. What
to send and how to read the answers is ``RouteSync``'s business (sync.py, sans-IO): the
supervisor hands the driver the desired route set (``set_desired``), the driver feeds
ExaBGP's answers and session events to the sync machine and writes the commands it hands
out, reports BGP session changes through a callback, and restarts a dead or out-of-step
ExaBGP with exponential backoff; a new ExaBGP starts from nothing acknowledged.

ExaBGP cannot outlive us: it is started through ``guard`` with PR_SET_PDEATHSIG (the
kernel kills it when we die, even by SIGKILL), and our relay stops it when our socket
closes. Nor can it outlive a *hung* sidecar: the driver writes a heartbeat to the relay
every third of ``exabgp.watchdog`` seconds, and a relay that hears none for that long
stops ExaBGP, so the leaf drops the session and our routes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from anycast_announcer.config import BgpConfig, ExabgpConfig
from anycast_announcer.exabgp.bridge import HEARTBEAT, bridge_argv, heartbeat_interval
from anycast_announcer.exabgp.protocol import (
    Ack,
    ApiReader,
    EndOfRib,
    NeighborState,
    RoutesReceived,
    Shutdown,
    Unparsed,
)
from anycast_announcer.exabgp.render import render_config, render_environment
from anycast_announcer.exabgp.sync import (
    AckOutcome,
    AckResult,
    ProtocolError,
    RouteSync,
    SessionChange,
)
from anycast_announcer.files import ensure_private_dir, write_private_file_atomic
from anycast_announcer.routes import Route, RouteKey

__all__ = [
    "DriverSnapshot",
    "EndOfRibCallback",
    "ExabgpDriver",
    "RoutesCallback",
    "SessionCallback",
]

log = structlog.get_logger("anycast_announcer.exabgp")

_T = TypeVar("_T")

SessionCallback = Callable[[str, bool, str], None]
"""Called with (peer address, established, reason) when a BGP session changes."""

RoutesCallback = Callable[[str, tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]], None]
"""Called with (peer, ((prefix, communities), ...) announced, prefixes withdrawn) for each
UPDATE a peer sent, when the driver was asked to receive routes."""

EndOfRibCallback = Callable[[str, str], None]
"""Called with (peer, family such as ``ipv4 unicast``) for each End-of-RIB marker a peer
sent, when the driver was asked to receive routes."""

_CONNECT_TIMEOUT = 20.0
_OUTPUT_LINE_KEPT = 4096
"""Bytes of an unterminated ExaBGP output line kept until its newline comes."""
_STABLE_AFTER = 30.0
"""A run this long resets the restart backoff."""


@dataclass(frozen=True, slots=True)
class DriverSnapshot:
    """What the driver can tell readers (status API, tests) without handing out state."""

    pid: int | None
    restarts: int
    connected: bool
    sessions_up: frozenset[str]
    acknowledged: int
    desired: int


class _GenerationLostError(Exception):
    """The current ExaBGP process or its API connection is gone."""


def _default_executable() -> str:
    beside = Path(sys.executable).with_name("exabgp")
    if beside.exists():
        return str(beside)
    found = shutil.which("exabgp")
    if found is None:
        raise FileNotFoundError("exabgp is not installed beside this Python nor on PATH")
    return found


def _normalise(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


class ExabgpDriver:
    """Runs ExaBGP and keeps what it announces equal to the desired route set."""

    def __init__(
        self,
        bgp: BgpConfig,
        settings: ExabgpConfig,
        on_session: SessionCallback,
        on_restart: Callable[[], None] | None = None,
        on_connection: Callable[[bool], None] | None = None,
        *,
        on_routes: RoutesCallback | None = None,
        on_end_of_rib: EndOfRibCallback | None = None,
    ) -> None:
        self._bgp = bgp
        self._settings = settings
        self._on_routes = on_routes
        self._on_end_of_rib = on_end_of_rib
        """Given (rescue membership), ExaBGP also asks the peers for End-of-RIB markers."""
        self._on_session = on_session
        self._on_restart = on_restart
        self._on_connection = on_connection
        self._restart_now = False
        self._sync = RouteSync()
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._synced.set()
        self._process: asyncio.subprocess.Process | None = None
        self._restarts = 0
        self._stopping = False
        self._run_dir: Path | None = None

    # -- the supervisor's side -------------------------------------------------------

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> None:
        """Replace the desired route set; the driver sends the difference."""
        if self._sync.set_desired(routes):
            self._update_synced()
            self._wake.set()

    async def wait_synced(self) -> None:
        """Return once ExaBGP holds what it can of the desired set (bound it by a timeout)."""
        await self._synced.wait()

    def snapshot(self) -> DriverSnapshot:
        """A copy of the driver's state for readers."""
        return DriverSnapshot(
            pid=self._process.pid if self._process and self._process.returncode is None else None,
            restarts=self._restarts,
            connected=self._sync.connected,
            sessions_up=self._sync.sessions_up,
            acknowledged=len(self._sync.acknowledged),
            desired=len(self._sync.desired),
        )

    def reconfigure(self, bgp: BgpConfig, settings: ExabgpConfig) -> None:
        """New neighbors or settings: restart ExaBGP with them, without backoff."""
        self._bgp = bgp
        self._settings = settings
        self._restart_now = True
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    async def stop(self) -> None:
        """Stop ExaBGP now (the caller withdrew what it wanted withdrawn first)."""
        self._stopping = True
        await self._kill_process(grace=0.5)

    # -- the process side ------------------------------------------------------------

    async def run(self) -> None:
        """Run ExaBGP generations until cancelled or stopped."""
        backoff = self._settings.restart_backoff_initial
        with self._runtime_dir() as run_dir:
            self._run_dir = run_dir
            socket_path = run_dir / "api.sock"
            connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
                asyncio.Queue()
            )

            async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await connections.put((reader, writer))

            server = await asyncio.start_unix_server(accept, path=str(socket_path))
            try:
                while not self._stopping:
                    started = asyncio.get_running_loop().time()
                    try:
                        await self._generation(run_dir, socket_path, connections)
                    except _GenerationLostError as lost:
                        log.warning("exabgp_lost", reason=str(lost))
                    finally:
                        await self._end_generation()
                    if self._stopping:
                        break
                    ran = asyncio.get_running_loop().time() - started
                    if ran >= _STABLE_AFTER or self._restart_now:
                        backoff = self._settings.restart_backoff_initial
                    self._restarts += 1
                    if self._on_restart is not None:
                        self._on_restart()
                    if self._restart_now:
                        self._restart_now = False
                        log.info(
                            "exabgp_restarting",
                            in_seconds=0,
                            restarts=self._restarts,
                            reason="reconfigured",
                        )
                        continue
                    log.info(
                        "exabgp_restarting", in_seconds=round(backoff, 3), restarts=self._restarts
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._settings.restart_backoff_max)
            finally:
                server.close()
                await self._kill_process(grace=0.2)

    @contextlib.contextmanager
    def _runtime_dir(self) -> Iterator[Path]:
        if self._settings.run_dir is not None:
            # 0700, ours, not a symlink: it holds the API socket and the MD5 password.
            path = ensure_private_dir(self._settings.run_dir)
            with contextlib.suppress(FileNotFoundError):
                (path / "api.sock").unlink()
            yield path
            return
        # Private (0700) so no other local user can reach the API socket.
        with tempfile.TemporaryDirectory(prefix="anycast-announcer-") as name:
            yield Path(name)

    async def _generation(
        self,
        run_dir: Path,
        socket_path: Path,
        connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    ) -> None:
        # Drain stale connections from a previous generation's relay.
        while not connections.empty():
            _, stale = connections.get_nowait()
            stale.close()
        process = self._process = await self._start_exabgp(run_dir, socket_path)
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Future[Any]] = []

        def spawn(coroutine: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
            task = loop.create_task(coroutine)
            tasks.append(task)
            return task

        # Plain tasks, not a TaskGroup: losing ExaBGP is an expected outcome that must
        # surface as _GenerationLostError, not wrapped in an ExceptionGroup.
        try:
            spawn(self._relay_output(process))
            exited = spawn(process.wait())
            connected = spawn(connections.get())
            done, _ = await asyncio.wait(
                {exited, connected}, timeout=_CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if connected not in done:
                raise _GenerationLostError(
                    f"exabgp exited with status {process.returncode} before connecting"
                    if exited in done
                    else "exabgp did not start its API process in time"
                )
            reader, writer = connected.result()
            self._sync.on_connected()
            self._update_synced()
            log.info("exabgp_connected", pid=process.pid)
            if self._on_connection is not None:
                self._on_connection(True)
            try:
                if self._settings.watchdog > 0:
                    spawn(self._heartbeat(writer))
                receiving = spawn(self._receive(reader))
                syncing = spawn(self._send(writer))
                done, _ = await asyncio.wait(
                    {receiving, syncing, exited}, return_when=asyncio.FIRST_COMPLETED
                )
                if exited in done:
                    raise _GenerationLostError(f"exabgp exited with status {exited.result()}")
                for finished in done:
                    if (error := finished.exception()) is not None:
                        raise _GenerationLostError(str(error)) from error
                raise _GenerationLostError("api connection closed")
            finally:
                writer.close()
        finally:
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _start_exabgp(self, run_dir: Path, socket_path: Path) -> asyncio.subprocess.Process:
        """Render ExaBGP's files (private, atomic) and start it through the guard."""
        conf = run_dir / "exabgp.conf"
        relay = bridge_argv(str(socket_path), self._settings.watchdog)
        write_private_file_atomic(
            conf,
            render_config(
                self._bgp,
                relay,
                receive_routes=self._on_routes is not None,
                end_of_rib=self._on_end_of_rib is not None,
            ),
        )
        user = pwd.getpwuid(os.getuid()).pw_name
        # All settings travel as environment variables; an empty env file stops ExaBGP
        # from reading a system-wide one (and from advising us to create it).
        env_file = run_dir / "exabgp.env"
        write_private_file_atomic(env_file, "")
        env = {**os.environ, **render_environment(user), "EXABGP_ENVFILE": str(env_file)}
        executable = self._settings.executable or _default_executable()
        guard = [sys.executable, "-m", "anycast_announcer.exabgp.guard", str(os.getpid())]
        process = await asyncio.create_subprocess_exec(
            *guard,
            executable,
            "server",
            str(conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            # Own session: a Ctrl-C on our terminal must not reach ExaBGP before we withdrew.
            start_new_session=True,
        )
        log.info("exabgp_started", pid=process.pid, executable=executable)
        return process

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        parser = ApiReader()
        while data := await reader.read(65536):
            for event in parser.feed(data):
                if isinstance(event, Ack):
                    self._acknowledge(event.ok)
                elif isinstance(event, NeighborState):
                    change = self._sync.on_neighbor(
                        _normalise(event.peer), event.state, event.reason
                    )
                    self._report(change)
                elif isinstance(event, RoutesReceived):
                    if self._on_routes is not None:
                        self._on_routes(
                            _normalise(event.peer),
                            tuple((r.prefix, r.communities) for r in event.announced),
                            event.withdrawn,
                        )
                elif isinstance(event, EndOfRib):
                    log.info("bgp_end_of_rib", peer=event.peer, family=event.family)
                    if self._on_end_of_rib is not None:
                        self._on_end_of_rib(_normalise(event.peer), event.family)
                elif isinstance(event, Shutdown):
                    log.info("exabgp_shutting_down")
                    for change in self._sync.on_shutdown():
                        self._report(change)
                elif isinstance(event, Unparsed):
                    log.debug("exabgp_message", line=event.line[:500])
            self._update_synced()
            self._wake.set()

    def _acknowledge(self, ok: bool) -> None:
        try:
            outcome = self._sync.on_ack(ok)
        except ProtocolError as error:
            # Every later answer would be paired with the wrong command: start over.
            raise _GenerationLostError(f"out of step with exabgp: {error}") from None
        _log_outcome(outcome)

    def _report(self, change: SessionChange | None) -> None:
        if change is None:
            return
        log.info(
            "bgp_session_changed",
            peer=change.peer,
            old="down" if change.up else "up",
            new="up" if change.up else "down",
            reason=change.reason,
        )
        self._on_session(change.peer, change.up, change.reason)

    def _update_synced(self) -> None:
        if self._sync.synced:
            self._synced.set()
        else:
            self._synced.clear()

    async def _send(self, writer: asyncio.StreamWriter) -> None:
        """Write each batch RouteSync hands out; ExaBGP must answer within ack_timeout."""
        while True:
            self._wake.clear()
            batch = self._sync.commands_to_send()
            if batch:
                writer.write("".join(command.line + "\n" for command in batch).encode())
                await writer.drain()
            if not self._sync.in_flight:
                self._update_synced()
                await self._wake.wait()
                continue
            try:
                async with asyncio.timeout(self._settings.ack_timeout):
                    await self._wake.wait()
            except TimeoutError:
                raise _GenerationLostError(
                    f"no acknowledgement within {self._settings.ack_timeout}s"
                ) from None

    async def _heartbeat(self, writer: asyncio.StreamWriter) -> None:
        """Tell the relay we live; when our loop stops, it stops ExaBGP (dead-man switch).

        The first beat goes out at once: the relay's deadline runs from its connection.
        """
        interval = heartbeat_interval(self._settings.watchdog)
        while True:
            writer.write(HEARTBEAT)
            await asyncio.sleep(interval)

    async def _relay_output(self, process: asyncio.subprocess.Process) -> None:
        """ExaBGP's own log lines into ours, however long a line gets."""
        assert process.stdout is not None  # we asked for a pipe
        pending = b""
        while chunk := await process.stdout.read(65536):
            lines = (pending + chunk).split(b"\n")
            # Keep at most one partial line, and only its start: a runaway line without a
            # newline must neither grow our memory nor stop us from emptying the pipe.
            pending = lines.pop()[:_OUTPUT_LINE_KEPT]
            for line in lines:
                _log_output(line)
        if pending:
            _log_output(pending)

    async def _end_generation(self) -> None:
        if self._on_connection is not None:
            self._on_connection(False)
        await self._kill_process(grace=0.2)
        for change in self._sync.on_disconnected():
            self._report(change)
        self._update_synced()

    async def _kill_process(self, grace: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        log.info("exabgp_stopped", pid=process.pid, status=process.returncode)


def _log_outcome(outcome: AckOutcome) -> None:
    command = outcome.command
    if outcome.result is AckResult.REJECTED:
        # Our encoding produced something ExaBGP refused: a bug of ours, not the user's.
        log.error("exabgp_command_rejected", command=command.line)
    elif outcome.result is AckResult.SESSION_DOWN:
        log.debug("exabgp_announce_on_session_down", command=command.line)
    else:
        event = "route_announced" if outcome.result is AckResult.ANNOUNCED else "route_withdrawn"
        log.info(event, peer=command.key.peer, prefix=command.key.prefix, command=command.line)


def _log_output(line: bytes) -> None:
    text = line.decode(errors="replace").rstrip()
    if text:
        log.info("exabgp_output", line=text[:500])
