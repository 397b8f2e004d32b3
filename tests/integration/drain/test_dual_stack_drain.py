"""A drain waits for IPv4 clients of a dual-stack ``[::]`` listener (issue 20).

Go, Java and nginx (``ipv6only=off``) listen on ``[::]``; an IPv4 client accepted there
is an AF_INET6 socket with an IPv4-mapped address. Real sockets on loopback, real
sock_diag dumps, the real drain worker, and the decision core fed what it reports.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from anycast_announcer.connections import count_established
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import ConnectionsCounted, DrainRequested, Input
from anycast_announcer.status import ExabgpStatus
from anycast_announcer.workers.drains import DrainWorkers
from tests.unit.core.helpers import BASE, Harness, at

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"
EXABGP = ExabgpStatus(
    pid=1, running=True, connected=True, restarts=0, routes_acknowledged=0, routes_desired=0
)


@pytest.fixture
def dual_stack() -> Iterator[socket.socket]:
    """A listener on ``[::]`` that also accepts IPv4 (IPV6_V6ONLY off)."""
    server = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.bind(("::", 0))
    server.listen()
    try:
        yield server
    finally:
        server.close()


def _connect_v4(server: socket.socket) -> tuple[socket.socket, socket.socket]:
    client = socket.create_connection((LOOPBACK, server.getsockname()[1]), timeout=5)
    accepted, peer = server.accept()
    assert accepted.family == socket.AF_INET6
    assert peer[0] == f"::ffff:{LOOPBACK}"  # the mapped form this test is about
    return client, accepted


def test_an_ipv4_client_of_a_dual_stack_listener_is_counted(dual_stack: socket.socket) -> None:
    """Regression: counted 0, because only AF_INET sockets were dumped for an IPv4 prefix."""
    port = dual_stack.getsockname()[1]
    client, accepted = _connect_v4(dual_stack)
    with client, accepted:
        assert count_established(LOOPBACK, [port]) == 1
    assert count_established(LOOPBACK, [port]) == 0


def test_a_mapped_ipv6_prefix_address_does_not_count_ipv4_clients(
    dual_stack: socket.socket,
) -> None:
    """An IPv6 prefix counts its own (unmapped) address only, never the IPv4 clients."""
    port = dual_stack.getsockname()[1]
    client, accepted = _connect_v4(dual_stack)
    with client, accepted:
        assert count_established("::1", [port]) == 0


async def test_the_drain_waits_for_ipv4_clients_of_a_dual_stack_listener(
    dual_stack: socket.socket,
) -> None:
    port = dual_stack.getsockname()[1]
    services = [{**BASE["services"][0], "check": {"type": "tcp", "host": LOOPBACK, "port": port}}]
    harness = Harness({**BASE, "services": services, "prefixes": [
        {"prefix": "127.0.0.1/32", "services": ["web"], "bandwidth_mbps": 10000},
    ], "drain": {**BASE["drain"], "connection_timeout": 60}})  # fmt: skip
    seen: list[Input] = []
    workers = DrainWorkers(seen.append)
    client, accepted = _connect_v4(dual_stack)
    try:
        for effect in harness.feed(DrainRequested(1, None, "maintenance"), 0.0):
            if isinstance(effect, fx.StartDrainWorker):
                assert effect.ports == (port,)
                workers.start(effect)
        counted = await _next_count(seen)
        assert counted == ConnectionsCounted("127.0.0.1/32", 1)
        harness.feed(counted, 1.0)
        phase = harness.core.status(at(1.0), EXABGP).prefixes[0].drain_phase
        assert phase == "waiting_connections"  # the drain holds the route for the client
        client.close()
        accepted.close()
        seen.clear()
        counted = await _next_count(seen, wanted=0)
        harness.feed(counted, 2.0)
        phase = harness.core.status(at(2.0), EXABGP).prefixes[0].drain_phase
        assert phase == "graceful_shutdown"
    finally:
        client.close()
        accepted.close()
        await workers.close()


async def _next_count(seen: list[Input], wanted: int | None = None) -> ConnectionsCounted:
    """The first count the worker reports (``wanted``, if given), within a generous 10 s."""
    async with asyncio.timeout(10):
        while True:
            for item in seen:
                if isinstance(item, ConnectionsCounted) and wanted in (None, item.count):
                    return item
            await asyncio.sleep(0.05)
