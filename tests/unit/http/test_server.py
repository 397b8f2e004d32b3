"""start_http: TCP (v4 and v6), the unix socket and its permissions, cleanup."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path

import aiohttp
import pytest

from anycast_announcer.config import HttpConfig
from anycast_announcer.http import TokenFileError, serving, start_http
from anycast_announcer.http.server import parse_listen
from anycast_announcer.metrics import Metrics
from tests.unit.http.fakes import FakeControl, make_app


def _tcp_port(addresses: list[object]) -> int:
    for address in addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise AssertionError(f"no TCP address in {addresses}")


async def _get_tcp(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


async def _get_unix(path: str, url: str) -> tuple[int, object]:
    connector = aiohttp.UnixConnector(path=path)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as response:
        return response.status, await response.json()


def _short_socket_path(tmp_path: Path) -> str:
    # sun_path is 108 bytes; pytest's tmp_path can be longer than that.
    return str(tmp_path / "api.sock") if len(str(tmp_path)) < 90 else f"/tmp/aa-{os.getpid()}.sock"


class TestStartHttp:
    async def test_serves_on_ipv4_loopback(self) -> None:
        """host:port with port 0 binds a free port, reported by runner.addresses."""
        runner = await start_http(make_app(), listen="127.0.0.1:0", unix_socket=None)
        try:
            port = _tcp_port(runner.addresses)
            assert await _get_tcp(f"http://127.0.0.1:{port}/healthz") == 200
        finally:
            await runner.cleanup()

    async def test_serves_on_ipv6_loopback(self) -> None:
        """'[::1]:port' is IPv6."""
        if not socket.has_ipv6:
            pytest.fail("this host has no IPv6; the sidecar must support it")
        runner = await start_http(make_app(), listen="[::1]:0", unix_socket=None)
        try:
            port = _tcp_port(runner.addresses)
            assert await _get_tcp(f"http://[::1]:{port}/healthz") == 200
        finally:
            await runner.cleanup()

    async def test_unix_socket_is_private_and_removed_at_cleanup(self, tmp_path: Path) -> None:
        """The socket is mode 0600 whatever the umask, and gone after cleanup."""
        path = _short_socket_path(tmp_path)
        old_umask = os.umask(0)  # the most permissive umask: the mode must not depend on it
        try:
            runner = await start_http(make_app(), listen="", unix_socket=path)
        finally:
            os.umask(old_umask)
        try:
            assert runner.addresses == [path]  # no TCP listener for listen=""
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == 0o600
            assert await _get_unix(path, "http://localhost/healthz") == (200, {"status": "ok"})
        finally:
            await runner.cleanup()
        assert not Path(path).exists()  # noqa: ASYNC240  # a test, after the server stopped

    async def test_stale_socket_is_replaced(self, tmp_path: Path) -> None:
        """A socket left by a killed sidecar does not stop the next one."""
        path = _short_socket_path(tmp_path)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(path)
        stale.close()
        runner = await start_http(make_app(), listen="", unix_socket=path)
        try:
            assert (await _get_unix(path, "http://localhost/readyz"))[0] == 200
        finally:
            await runner.cleanup()

    async def test_refuses_to_replace_a_regular_file(self, tmp_path: Path) -> None:
        """A typo pointing unix_socket at a real file must not delete that file."""
        path = tmp_path / "precious"
        path.write_text("data")
        with pytest.raises(OSError, match="not a socket"):
            await start_http(make_app(), listen="", unix_socket=str(path))
        assert path.read_text() == "data"

    async def test_tcp_and_unix_together(self, tmp_path: Path) -> None:
        """Both listeners serve the same app."""
        path = _short_socket_path(tmp_path)
        runner = await start_http(make_app(), listen="127.0.0.1:0", unix_socket=path)
        try:
            port = _tcp_port(runner.addresses)
            assert await _get_tcp(f"http://127.0.0.1:{port}/status") == 200
            assert (await _get_unix(path, "http://localhost/status"))[0] == 200
        finally:
            await runner.cleanup()

    async def test_port_in_use_fails_and_cleans_up(self) -> None:
        """A taken port raises OSError at start instead of serving nothing."""
        runner = await start_http(make_app(), listen="127.0.0.1:0", unix_socket=None)
        try:
            port = _tcp_port(runner.addresses)
            with pytest.raises(OSError, match="address already in use"):
                await start_http(make_app(), listen=f"127.0.0.1:{port}", unix_socket=None)
        finally:
            await runner.cleanup()
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9179", ("127.0.0.1", 9179)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    """host:port and [v6]:port."""
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9179", ":80", "host:", "host:http", "h:70000"])
def test_parse_listen_rejects(listen: str) -> None:
    """Anything else is a ValueError naming the value."""
    with pytest.raises(ValueError, match="host:port"):
        parse_listen(listen)


class TestServing:
    async def test_disabled_when_nothing_to_listen_on(self) -> None:
        """listen '' and no unix socket: no server at all."""
        config = HttpConfig(listen="")
        async with serving(FakeControl(), Metrics(), config) as runner:
            assert runner is None

    async def test_unsafe_token_file_stops_the_start(self, tmp_path: Path) -> None:
        """A readable-by-others token file is refused before anything listens."""
        token = tmp_path / "token"
        token.write_text("abc-0123456789abcdef\n")
        token.chmod(0o644)
        config = HttpConfig(
            listen="", unix_socket=_short_socket_path(tmp_path), token_file=str(token)
        )
        with pytest.raises(TokenFileError, match="chmod 600"):
            async with serving(FakeControl(), Metrics(), config):
                pass
        assert not Path(config.unix_socket or "").exists()  # noqa: ASYNC240  # test check

    async def test_serves_with_the_configured_token(self, tmp_path: Path) -> None:
        """The token from token_file guards /reload."""
        token = tmp_path / "token"
        token.write_text("abc-0123456789abcdef\n")
        token.chmod(0o600)
        path = _short_socket_path(tmp_path)
        config = HttpConfig(listen="", unix_socket=path, token_file=str(token))
        async with serving(FakeControl(), Metrics(), config):
            connector = aiohttp.UnixConnector(path=path)
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.post(
                    "http://localhost/reload",
                    headers={"Authorization": "Bearer abc-0123456789abcdef"},
                ) as response,
            ):
                assert response.status == 200
        assert not Path(path).exists()  # noqa: ASYNC240  # test check
