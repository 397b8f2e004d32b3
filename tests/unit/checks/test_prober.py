"""The Prober: dispatch by check type, one shared HTTP session, and the Probe seam."""

from __future__ import annotations

import aiohttp

from anycast_announcer.checks import Probe, Prober, ProbeResult
from anycast_announcer.config import CommandCheck, HttpCheck, TcpCheck


class FakeProbe:
    """What a supervisor test would pass instead of a Prober."""

    def __init__(self, result: ProbeResult) -> None:
        self.result = result
        self.calls: list[tuple[TcpCheck | HttpCheck | CommandCheck, float]] = []

    async def probe(
        self,
        check: TcpCheck | HttpCheck | CommandCheck,
        timeout: float,  # the Probe protocol's signature
    ) -> ProbeResult:
        self.calls.append((check, timeout))
        return self.result


async def probe_through(seam: Probe, check: TcpCheck) -> ProbeResult:
    return await seam.probe(check, 0.5)


class TestProber:
    async def test_dispatches_every_check_type(self, accepting_port: int, http_base: str) -> None:
        """TCP, HTTP and command checks each reach their own probe."""
        async with Prober() as prober:
            tcp = await prober.probe(TcpCheck(type="tcp", host="127.0.0.1", port=accepting_port), 1)
            http = await prober.probe(HttpCheck(type="http", url=f"{http_base}/ok"), 1)
            cmd = await prober.probe(CommandCheck(type="command", argv=["false"]), 1)
        reasons = [result.reason for result in (tcp, http, cmd)]
        assert reasons == ["connected", "http status 200", "exit status 1"]

    async def test_shares_one_http_session_and_closes_it(self, http_base: str) -> None:
        """All HTTP probes use one session, opened lazily and closed on exit."""
        check = HttpCheck(type="http", url=f"{http_base}/ok")
        async with Prober() as prober:
            assert prober._session is None
            await prober.probe(check, 1)
            session = prober._session
            await prober.probe(check, 1)
            assert isinstance(session, aiohttp.ClientSession)
            assert prober._session is session
        assert session.closed

    async def test_a_fake_satisfies_the_probe_protocol(self) -> None:
        """The supervisor's seam accepts any object with a matching ``probe``."""
        fake = FakeProbe(ProbeResult(ok=False, latency=0.0, reason="connect refused"))
        check = TcpCheck(type="tcp", host="127.0.0.1", port=1)
        assert (await probe_through(fake, check)).reason == "connect refused"
        assert fake.calls == [(check, 0.5)]
        real: Probe = Prober()
        assert isinstance(real, Prober)
