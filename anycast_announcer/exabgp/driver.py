"""The ExaBGP process driver: the asyncio shell around ExaBGP.

It owns three things and nothing else: the ExaBGP child process, the API connection to it,
and the set of routes ExaBGP has acknowledged. The supervisor hands it the desired route
set (``set_desired``); the driver sends the difference, checks every ``done``/``error``,
reports BGP session changes through a callback, restarts a dead ExaBGP with exponential
backoff and, on a new ExaBGP, starts again from an empty acknowledged set.

ExaBGP cannot outlive us: it is started through ``guard`` with PR_SET_PDEATHSIG (the
kernel kills it when we die, even by SIGKILL) and runs with ``api.terminate`` (it exits
when our relay's socket closes).
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
from anycast_announcer.exabgp.commands import Command, plan_commands
from anycast_announcer.exabgp.protocol import Ack, ApiReader, NeighborState, Unparsed
from anycast_announcer.exabgp.render import render_config, render_environment
from anycast_announcer.routes import Route, RouteKey

__all__ = ["DriverSnapshot", "ExabgpDriver", "SessionCallback"]

log = structlog.get_logger("anycast_announcer.exabgp")

_T = TypeVar("_T")

SessionCallback = Callable[[str, bool, str], None]
"""Called with (peer address, established, reason) when a BGP session changes."""

_CONNECT_TIMEOUT = 20.0
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
    ) -> None:
        self._bgp = bgp
        self._settings = settings
        self._on_session = on_session
        self._on_restart = on_restart
        self._restart_now = False
        self._desired: dict[RouteKey, Route] = {}
        self._acknowledged: dict[RouteKey, Route] = {}
        self._rejected: dict[RouteKey, Route] = {}
        self._sessions_up: set[str] = set()
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._connected = False
        self._process: asyncio.subprocess.Process | None = None
        self._restarts = 0
        self._stopping = False
        self._run_dir: Path | None = None
        self._acks: asyncio.Queue[bool] = asyncio.Queue()

    # -- the supervisor's side -------------------------------------------------------

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> None:
        """Replace the desired route set; the driver sends the difference."""
        if dict(routes) != self._desired:
            self._desired = dict(routes)
            self._synced.clear()
            self._changed.set()

    async def wait_synced(self) -> None:
        """Return once ExaBGP acknowledged exactly the desired set (bound it by a timeout).

        Without a running ExaBGP nothing of ours is announced, so an empty desired set is
        trivially in sync then.
        """
        if not self._connected and not self._desired:
            return
        await self._synced.wait()

    def snapshot(self) -> DriverSnapshot:
        """A copy of the driver's state for readers."""
        return DriverSnapshot(
            pid=self._process.pid if self._process and self._process.returncode is None else None,
            restarts=self._restarts,
            connected=self._connected,
            sessions_up=frozenset(self._sessions_up),
            acknowledged=len(self._acknowledged),
            desired=len(self._desired),
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
            path = Path(self._settings.run_dir)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        conf = run_dir / "exabgp.conf"
        relay = [sys.executable, "-m", "anycast_announcer.exabgp.bridge", str(socket_path)]
        conf.write_text(render_config(self._bgp, relay), encoding="utf-8")
        user = pwd.getpwuid(os.getuid()).pw_name
        # All settings travel as environment variables; an empty env file stops ExaBGP
        # from reading a system-wide one (and from advising us to create it).
        env_file = run_dir / "exabgp.env"
        env_file.write_text("", encoding="utf-8")
        env = {**os.environ, **render_environment(user), "EXABGP_ENVFILE": str(env_file)}
        executable = self._settings.executable or _default_executable()
        # Drain stale connections from a previous generation's relay.
        while not connections.empty():
            _, stale = connections.get_nowait()
            stale.close()
        guard = [sys.executable, "-m", "anycast_announcer.exabgp.guard", str(os.getpid())]
        self._process = await asyncio.create_subprocess_exec(
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
        process = self._process
        log.info("exabgp_started", pid=process.pid, executable=executable)
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
            self._connected = True
            self._acks = asyncio.Queue()
            log.info("exabgp_connected", pid=process.pid)
            try:
                receiving = spawn(self._receive(reader))
                syncing = spawn(self._sync(writer))
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

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        parser = ApiReader()
        while data := await reader.read(65536):
            for event in parser.feed(data):
                if isinstance(event, Ack):
                    await self._acks.put(event.ok)
                elif isinstance(event, NeighborState):
                    self._session_event(_normalise(event.peer), event.state, event.reason)
                elif isinstance(event, Unparsed):
                    log.debug("exabgp_message", line=event.line[:500])

    def _session_event(self, peer: str, state: str, reason: str) -> None:
        # Whatever the session did, what it carries now is unknown to us (ExaBGP keeps no
        # adj-rib-out), so forget its acknowledged routes: the next sync re-sends them.
        self._forget_peer(peer)
        was_up = peer in self._sessions_up
        if state == "up":
            self._sessions_up.add(peer)
        else:
            self._sessions_up.discard(peer)
        is_up = peer in self._sessions_up
        if was_up != is_up:
            log.info(
                "bgp_session_changed",
                peer=peer,
                old="up" if was_up else "down",
                new="up" if is_up else "down",
                reason=reason or state,
            )
            self._on_session(peer, is_up, reason or state)
        self._changed.set()

    def _forget_peer(self, peer: str) -> None:
        for key in [key for key in self._acknowledged if key.peer == peer]:
            del self._acknowledged[key]
        for key in [key for key in self._rejected if key.peer == peer]:
            del self._rejected[key]
        self._synced.clear()

    async def _sync(self, writer: asyncio.StreamWriter) -> None:
        while True:
            self._changed.clear()
            commands = [
                command
                for command in plan_commands(self._desired, self._acknowledged)
                if command.route is None
                # A session that just went down is still in the desired set until the
                # supervisor hears of it; announcing into it would only be acked and
                # logged as announced. The session's "up" triggers the real send.
                or (
                    command.key.peer in self._sessions_up
                    and self._rejected.get(command.key) != command.route
                )
            ]
            if commands:
                await self._send_batch(writer, commands)
                continue
            # Nothing left to send: ExaBGP holds what we want (or refused it, logged).
            self._synced.set()
            await self._changed.wait()

    async def _send_batch(self, writer: asyncio.StreamWriter, commands: list[Command]) -> None:
        writer.write("".join(command.line + "\n" for command in commands).encode())
        await writer.drain()
        for command in commands:
            try:
                async with asyncio.timeout(self._settings.ack_timeout):
                    ok = await self._acks.get()
            except TimeoutError:
                raise _GenerationLostError(
                    f"no acknowledgement within {self._settings.ack_timeout}s"
                ) from None
            if ok:
                if command.route is None:
                    self._acknowledged.pop(command.key, None)
                else:
                    self._acknowledged[command.key] = command.route
                self._rejected.pop(command.key, None)
                log.info(
                    "route_announced" if command.route else "route_withdrawn",
                    peer=command.key.peer,
                    prefix=command.key.prefix,
                    command=command.line,
                )
            else:
                # Our encoding produced something ExaBGP refused: a bug of ours, not the
                # user's. Do not retry the same line in a loop.
                if command.route is not None:
                    self._rejected[command.key] = command.route
                else:
                    self._acknowledged.pop(command.key, None)
                log.error("exabgp_command_rejected", command=command.line)

    async def _relay_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None  # we asked for a pipe
        while line := await process.stdout.readline():
            log.info("exabgp_output", line=line.decode(errors="replace").rstrip()[:500])

    async def _end_generation(self) -> None:
        self._connected = False
        await self._kill_process(grace=0.2)
        self._acknowledged.clear()
        self._rejected.clear()
        self._synced.clear()
        for peer in sorted(self._sessions_up):
            self._sessions_up.discard(peer)
            log.info(
                "bgp_session_changed", peer=peer, old="up", new="down", reason="exabgp stopped"
            )
            self._on_session(peer, False, "exabgp stopped")

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
