"""The TCP probe against real loopback listeners."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest

from anycast_announcer.checks import ProbeResult
from anycast_announcer.checks.tcp import probe
from anycast_announcer.config import TcpCheck
from tests.unit.checks.probe_helpers import LOOPBACK, open_fds


def tcp(port: int, host: str = LOOPBACK) -> TcpCheck:
    return TcpCheck(type="tcp", host=host, port=port)


@pytest.fixture
async def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The loop's getaddrinfo answers from this table (name -> addresses), never from
    the machine's resolver: no test depends on /etc/hosts or DNS. Other names: EAI_NONAME."""
    table: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()

    async def lookup(host: str, port: int, *args: object, **kwargs: object) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
            for address in table[host]
            for family in [socket.AF_INET6 if ":" in address else socket.AF_INET]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    return table


class TestTcpProbe:
    async def test_healthy_when_a_listener_accepts(self, accepting_port: int) -> None:
        """A listening port is healthy; the latency is measured and small."""
        result = await probe(tcp(accepting_port), timeout=1.0)
        assert result == ProbeResult(ok=True, latency=result.latency, reason="connected")
        assert 0 <= result.latency < 1.0

    async def test_refused_when_nothing_listens(self, closed_port: int) -> None:
        """A port without a listener is reported as refused, at once."""
        result = await probe(tcp(closed_port), timeout=1.0)
        assert (result.ok, result.reason) == (False, "connect refused")

    async def test_times_out_when_the_handshake_never_completes(
        self, unresponsive_port: int
    ) -> None:
        """A connect that hangs ends at the timeout, names it, and leaks no socket."""
        before = open_fds()
        # A generous outer deadline, not a window: a loaded machine may end it late.
        async with asyncio.timeout(10):
            result = await probe(tcp(unresponsive_port), timeout=0.3)
        assert (result.ok, result.reason) == (False, "timeout after 0.3s")
        assert result.latency >= 0.3  # it never ends early
        assert open_fds() <= before

    async def test_connection_is_closed_after_success(self, accepting_port: int) -> None:
        """Repeated probes do not accumulate file descriptors."""
        await probe(tcp(accepting_port), timeout=1.0)
        await asyncio.sleep(0.05)  # let the server side of that first connection close
        before = open_fds()
        for _ in range(20):
            assert (await probe(tcp(accepting_port), timeout=1.0)).ok
        await asyncio.sleep(0.05)
        assert open_fds() <= before

    async def test_resolves_names(
        self, accepting_port: int, resolver: dict[str, list[str]]
    ) -> None:
        """A host name is resolved; one answering address of several is enough."""
        resolver["web.test"] = ["::1", LOOPBACK]  # nothing listens on ::1 here
        result = await probe(tcp(accepting_port, host="web.test"), timeout=1.0)
        assert result.ok, result.reason

    async def test_unresolvable_name_is_a_failure_not_an_error(
        self, resolver: dict[str, list[str]]
    ) -> None:
        """A name that does not resolve is a failed probe with a reason naming the host."""
        result = await probe(tcp(80, host="no-such-host.invalid"), timeout=2.0)
        assert not result.ok
        assert result.reason.startswith("cannot resolve no-such-host.invalid")

    async def test_cancellation_propagates_and_closes_the_socket(
        self, unresponsive_port: int
    ) -> None:
        """Cancelling a hanging probe raises CancelledError and leaks no socket."""
        before = open_fds()
        task = asyncio.create_task(probe(tcp(unresponsive_port), timeout=10.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_fds() <= before


class TestAddressLiterals:
    async def test_ipv6_literal(self) -> None:
        """An IPv6 address connects without a resolver."""
        server = await asyncio.start_server(lambda r, w: w.close(), "::1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            result = await probe(tcp(port, host="::1"), timeout=1.0)
            assert (result.ok, result.reason) == (True, "connected")
        finally:
            server.close()
            await server.wait_closed()

    async def test_literals_skip_getaddrinfo(
        self, accepting_port: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Address literals never reach the resolver's thread pool (it cost half the CPU
        at 500 services); names still do."""
        calls: list[str] = []
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def counting(host: str, *args: object, **kwargs: object) -> object:
            calls.append(host)
            return await real(host, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(loop, "getaddrinfo", counting)
        assert (await probe(tcp(accepting_port), timeout=1.0)).ok
        assert calls == []
        with contextlib.suppress(OSError):  # only whether the resolver is asked matters
            await probe(tcp(accepting_port, host="web.test"), timeout=1.0)
        assert calls == ["web.test"]
