"""The API's connection cap, request-head deadline and Host check, over real sockets.

The fd-exhaustion attack was: hold a few hundred connections that never finish their
request head. These tests hold such connections and watch the server close them, keep
its count bounded, and still answer a real client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from anycast_announcer.config import HttpConfig
from anycast_announcer.http import create_app, serving, start_http
from anycast_announcer.http.guard import ConnectionGuard
from anycast_announcer.http.hostcheck import host_check_middleware, host_of
from anycast_announcer.metrics import Metrics
from tests.unit.http.fakes import FakeControl

HALF_REQUEST = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def port_of(runner: web.AppRunner) -> int:
    return int(next(a for a in runner.addresses if isinstance(a, tuple))[1])


async def guarded(guard: ConnectionGuard, app: web.Application | None = None) -> web.AppRunner:
    if app is None:
        app = create_app(FakeControl(), Metrics(), token=None, middlewares=[guard.middleware])
    return await start_http(app, listen="127.0.0.1:0", unix_socket=None, guard=guard)


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def held(port: int, count: int, payload: bytes = HALF_REQUEST) -> AsyncIterator[list[Stream]]:
    """``count`` connections that each sent ``payload`` and then nothing."""
    streams: list[Stream] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            if payload:
                writer.write(payload)
                await writer.drain()
            streams.append((reader, writer))
        yield streams
    finally:
        for _, writer in streams:
            writer.close()


async def closed_by_server(stream: Stream, within: float) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` seconds."""
    reader, _ = stream
    try:
        async with asyncio.timeout(within):
            while data := await reader.read(4096):
                del data  # a response before the close is fine
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110  # polling state the server owns
            await asyncio.sleep(0.01)


async def get(url: str, host: str | None = None) -> int:
    headers = {"Host": host} if host is not None else None
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        await response.read()
        return response.status


class TestDeadline:
    async def test_a_half_sent_request_is_cut_off(self) -> None:
        """No complete request head within header_timeout: the server hangs up."""
        guard = ConnectionGuard(limit=64, header_timeout=0.5)
        runner = await guarded(guard)
        try:
            async with held(port_of(runner), 1) as [stream]:
                assert await closed_by_server(stream, within=10)
            assert guard.timed_out == 1
        finally:
            await runner.cleanup()

    async def test_a_silent_connection_is_cut_off(self) -> None:
        guard = ConnectionGuard(limit=64, header_timeout=0.5)
        runner = await guarded(guard)
        try:
            async with held(port_of(runner), 1, payload=b"") as [stream]:
                assert await closed_by_server(stream, within=10)
        finally:
            await runner.cleanup()

    async def test_an_idle_keep_alive_connection_is_cut_off(self) -> None:
        """After a response, the next request head has header_timeout to arrive too."""
        guard = ConnectionGuard(limit=64, header_timeout=0.5)
        runner = await guarded(guard)
        try:
            request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            async with held(port_of(runner), 1, payload=request) as [stream]:
                assert (await stream[0].readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
                assert await closed_by_server(stream, within=10)
            assert guard.timed_out == 1
        finally:
            await runner.cleanup()

    async def test_a_slow_handler_is_not_cut_off(self) -> None:
        """The deadline is for the request head; a request being handled may take long."""
        guard = ConnectionGuard(limit=64, header_timeout=0.3)

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(1.0)
            return web.Response(text="done")

        app = web.Application(middlewares=[guard.middleware])
        app.router.add_get("/slow", slow)
        runner = await guarded(guard, app)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port_of(runner)}/slow") as response,
            ):
                assert await response.text() == "done"
        finally:
            await runner.cleanup()


class TestCap:
    async def test_a_flood_of_idle_connections_cannot_lock_out_a_client(self) -> None:
        """200 idle connections against a cap of 8: the oldest make room, the count stays at
        the cap, and a real request is answered while the flood is held."""
        guard = ConnectionGuard(limit=8, header_timeout=30)
        runner = await guarded(guard)
        port = port_of(runner)
        try:
            async with held(port, 200) as flood:
                assert await get(f"http://127.0.0.1:{port}/healthz") == 200
                assert guard.open_connections <= 8
                assert guard.evicted >= 190
                assert await closed_by_server(flood[0], within=10)
        finally:
            await runner.cleanup()

    async def test_busy_connections_are_never_evicted(self) -> None:
        """When every slot is handling a request, the newcomer is the one turned away."""
        guard = ConnectionGuard(limit=2, header_timeout=30)
        release = asyncio.Event()

        async def wait(request: web.Request) -> web.Response:
            await release.wait()
            return web.Response(text="finished")

        app = web.Application(middlewares=[guard.middleware])
        app.router.add_get("/wait", wait)
        runner = await guarded(guard, app)
        url = f"http://127.0.0.1:{port_of(runner)}/wait"
        try:
            async with aiohttp.ClientSession() as session:

                async def fetch() -> str:
                    async with session.get(url) as response:
                        return await response.text()

                busy = [asyncio.get_running_loop().create_task(fetch()) for _ in range(2)]
                await wait_for(
                    lambda: (
                        guard.open_connections == 2
                        and all(c.active for c in guard._connections.values())
                    )
                )
                async with held(port_of(runner), 1, payload=b"") as [late]:
                    assert await closed_by_server(late, within=10)
                release.set()
                assert await asyncio.gather(*busy) == ["finished", "finished"]
        finally:
            await runner.cleanup()

    def test_limits_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            ConnectionGuard(limit=0, header_timeout=1)


@pytest.fixture
async def host_checked() -> AsyncIterator[tuple[int, str]]:
    """The API with the Host check for listen 127.0.0.1 and one extra allowed name."""
    app = create_app(
        FakeControl(),
        Metrics(),
        token=None,
        middlewares=[host_check_middleware("127.0.0.1", ["sidecar.example.net"])],
    )
    runner = await start_http(app, listen="127.0.0.1:0", unix_socket=None)
    try:
        yield port_of(runner), f"http://127.0.0.1:{port_of(runner)}"
    finally:
        await runner.cleanup()


class TestHostCheck:
    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1",
            "127.0.0.1:9179",
            "localhost",
            "LOCALHOST:1",
            "[::1]:9179",
            "sidecar.example.net",
        ],
    )
    async def test_own_names_pass(self, host_checked: tuple[int, str], host: str) -> None:
        _, base = host_checked
        assert await get(f"{base}/status", host=host) == 200

    @pytest.mark.parametrize(
        "host", ["attacker.example", "127.0.0.1.attacker.example", "localhost.evil", "10.0.0.1"]
    )
    async def test_rebinding_names_get_421(self, host_checked: tuple[int, str], host: str) -> None:
        """A page on attacker.example that rebinds its name to 127.0.0.1 reads nothing."""
        _, base = host_checked
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/status", headers={"Host": host}) as response,
        ):
            assert response.status == 421
            assert "http.allowed_hosts" in (await response.json())["error"]

    async def test_missing_host_gets_421(self, host_checked: tuple[int, str]) -> None:
        port, _ = host_checked
        async with held(port, 1, payload=b"GET /status HTTP/1.0\r\n\r\n") as [(reader, _)]:
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.0 421")

    async def test_metrics_answer_any_host(self, host_checked: tuple[int, str]) -> None:
        """Prometheus scrapes by names the sidecar cannot know (srv1.dc1.example:9179)."""
        _, base = host_checked
        assert await get(f"{base}/metrics", host="srv1.dc1.example:9179") == 200
        assert await get(f"{base}/metrics?x=1", host="attacker.example") == 200

    @pytest.mark.parametrize("path", ["/status", "/", "/healthz", "/openapi.json", "/metrics/"])
    async def test_only_metrics_is_unchecked(
        self, host_checked: tuple[int, str], path: str
    ) -> None:
        """The exemption is one read-only path, not a prefix of others."""
        _, base = host_checked
        assert await get(f"{base}{path}", host="srv1.dc1.example:9179") == 421

    async def test_writes_to_metrics_are_still_checked(self, host_checked: tuple[int, str]) -> None:
        _, base = host_checked
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{base}/metrics", headers={"Host": "attacker.example"}) as response,
        ):
            assert response.status == 421

    async def test_unix_socket_is_not_checked(self, tmp_path: Path) -> None:
        path = str(tmp_path / "api.sock") if len(str(tmp_path)) < 90 else "/tmp/aa-hc.sock"
        config = HttpConfig(listen="127.0.0.1:1", unix_socket=path)
        middleware = host_check_middleware("127.0.0.1")
        app = create_app(FakeControl(), Metrics(), token=None, middlewares=[middleware])
        runner = await start_http(app, listen="", unix_socket=config.unix_socket)
        try:
            connector = aiohttp.UnixConnector(path=path)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.get(
                    "http://attacker.example/status", headers={"Host": "attacker.example"}
                ) as response,
            ):
                assert response.status == 200
        finally:
            await runner.cleanup()

    async def test_wildcard_listen_accepts_the_address_connected_to(self) -> None:
        """listen 0.0.0.0 names no host, but the address a client dialled is fine."""
        app = create_app(
            FakeControl(), Metrics(), token=None, middlewares=[host_check_middleware("0.0.0.0")]
        )
        runner = await start_http(app, listen="127.0.0.2:0", unix_socket=None)
        try:
            base = f"http://127.0.0.2:{port_of(runner)}"
            assert await get(f"{base}/status", host=f"127.0.0.2:{port_of(runner)}") == 200
            assert await get(f"{base}/status", host="127.0.0.3") == 421
        finally:
            await runner.cleanup()

    @pytest.mark.parametrize(
        ("header", "host"),
        [("[::1]:80", "::1"), ("::1", "::1"), ("Example.NET:8080", "example.net"), ("x", "x")],
    )
    def test_host_of(self, header: str, host: str) -> None:
        assert host_of(header) == host


class TestServing:
    async def test_serving_wires_the_guard_and_the_host_check(self, tmp_path: Path) -> None:
        """The configured limits reach the listener: a foreign Host is refused and a
        half-sent request is cut off after http.header_timeout."""
        config = HttpConfig(listen="127.0.0.1:39179", header_timeout=0.5, max_connections=4)
        async with serving(FakeControl(), Metrics(), config) as runner:
            assert runner is not None
            base = "http://127.0.0.1:39179"
            assert await get(f"{base}/healthz") == 200
            assert await get(f"{base}/healthz", host="attacker.example") == 421
            async with held(39179, 1) as [stream]:
                assert await closed_by_server(stream, within=10)
