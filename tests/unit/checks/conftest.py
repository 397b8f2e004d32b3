"""Real services on loopback for the probe tests: listeners, an aiohttp server, TLS."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from tests.unit.checks.probe_helpers import LOOPBACK


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port with a listener; the kernel completes handshakes, nobody ever answers."""
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
async def accepting_port() -> AsyncIterator[int]:
    """A real server that accepts every connection and closes it."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connects are refused, and nobody else can take it."""
    with socket.socket() as holder:
        holder.bind((LOOPBACK, 0))
        yield holder.getsockname()[1]


@pytest.fixture
def unresponsive_port() -> Iterator[int]:
    """A listener whose accept queue is full, so the kernel drops new SYNs: connects hang."""
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex((LOOPBACK, port))
                fillers.append(filler)
            yield port
        finally:
            for filler in fillers:
                filler.close()


def _app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="status: all good\n")

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def host(request: web.Request) -> web.Response:
        return web.Response(text=f"host={request.headers.get('Host', '')}")

    async def big(request: web.Request) -> web.Response:
        # The marker sits past the 64 KiB the probe reads.
        return web.Response(text="x" * (200 * 1024) + "MARKER")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/host", host)
    app.router.add_get("/big", big)
    return app


async def _serve(context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    runner = web.AppRunner(_app())
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"{'https' if context else 'http'}://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_base() -> AsyncIterator[str]:
    """Base URL of a real aiohttp server on loopback."""
    async for base in _serve():
        yield base


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1, made by the openssl command line."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return Certificate(cert=cert, key=key)


@pytest.fixture
async def https_base(self_signed: Certificate) -> AsyncIterator[str]:
    """Base URL of the same server behind TLS with the self-signed certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(self_signed.cert, self_signed.key)
    async for base in _serve(context):
        yield base
