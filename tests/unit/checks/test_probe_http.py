"""The HTTP(S) probe against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from anycast_announcer.checks.http import new_session, probe
from anycast_announcer.config import HttpCheck
from tests.unit.checks.probe_helpers import LOOPBACK


def http(url: str, **fields: Any) -> HttpCheck:
    return HttpCheck.model_validate({"type": url.split(":", 1)[0], "url": url, **fields})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as shared:
        yield shared


class TestHttpProbe:
    async def test_healthy_on_expected_status(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """200 is expected by default and reported with its status."""
        result = await probe(http(f"{http_base}/ok"), 1.0, session)
        assert (result.ok, result.reason) == (True, "http status 200")

    async def test_unexpected_status_names_the_status(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """A 503 is a failure that says 503."""
        result = await probe(http(f"{http_base}/unavailable"), 1.0, session)
        assert (result.ok, result.reason) == (False, "http status 503")

    async def test_expected_status_list_is_honoured(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """A service may declare 503 as healthy (e.g. a deliberately draining backend)."""
        check = http(f"{http_base}/unavailable", expected_status=[200, 503])
        assert (await probe(check, 1.0, session)).ok

    async def test_redirects_are_not_followed(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """A redirect is its own status, not the status of wherever it points."""
        result = await probe(http(f"{http_base}/redirect"), 1.0, session)
        assert (result.ok, result.reason) == (False, "http status 302")
        assert (await probe(http(f"{http_base}/redirect", expected_status=[302]), 1.0, session)).ok

    async def test_body_regex_is_searched(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """The regex is searched anywhere in the body; a miss is "body did not match"."""
        good = await probe(http(f"{http_base}/ok", body_regex=r"all\s+good"), 1.0, session)
        bad = await probe(http(f"{http_base}/ok", body_regex="^broken"), 1.0, session)
        assert (good.ok, good.reason) == (True, "http status 200")
        assert (bad.ok, bad.reason) == (False, "body did not match")

    async def test_body_is_read_only_up_to_the_limit(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """Text past the first 64 KiB is never seen by the regex."""
        result = await probe(http(f"{http_base}/big", body_regex="MARKER"), 1.0, session)
        assert (result.ok, result.reason) == (False, "body did not match")
        assert (await probe(http(f"{http_base}/big", body_regex="^x+"), 1.0, session)).ok

    async def test_host_header_is_sent(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """host_header replaces the Host the URL would give (virtual-hosted services)."""
        check = http(
            f"{http_base}/host", host_header="svc.example", body_regex=r"^host=svc\.example$"
        )
        result = await probe(check, 1.0, session)
        assert result.ok, result.reason

    async def test_refused(self, closed_port: int, session: aiohttp.ClientSession) -> None:
        """Nothing listening is "connect refused", as for TCP checks."""
        result = await probe(http(f"http://{LOOPBACK}:{closed_port}/"), 1.0, session)
        assert (result.ok, result.reason) == (False, "connect refused")

    async def test_unresolvable_host(self, session: aiohttp.ClientSession) -> None:
        """A name that does not resolve is named in the reason, as for TCP checks."""
        result = await probe(http("http://no-such-host.invalid/"), 2.0, session)
        assert not result.ok
        assert result.reason.startswith("cannot resolve no-such-host.invalid: "), result.reason

    async def test_times_out_on_a_server_that_never_answers(
        self, listening_port: int, session: aiohttp.ClientSession
    ) -> None:
        """A server that accepts and stays silent ends at the timeout."""
        started = time.monotonic()
        result = await probe(http(f"http://{LOOPBACK}:{listening_port}/"), 0.3, session)
        assert (result.ok, result.reason) == (False, "timeout after 0.3s")
        assert time.monotonic() - started < 1.0

    async def test_without_a_session_uses_one_of_its_own(self, http_base: str) -> None:
        """The module can be used alone; it then opens and closes its own session."""
        assert (await probe(http(f"{http_base}/ok"), 1.0)).ok

    async def test_connections_are_not_kept_alive(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """After a probe no pooled connection remains, so a dead service is seen at once."""
        await probe(http(f"{http_base}/ok"), 1.0, session)
        connector = session.connector
        assert connector is not None
        assert connector.force_close

    async def test_cancellation_propagates(
        self, listening_port: int, session: aiohttp.ClientSession
    ) -> None:
        """Cancelling a probe in flight raises CancelledError rather than a result."""
        task = asyncio.create_task(probe(http(f"http://{LOOPBACK}:{listening_port}/"), 10, session))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class TestHttpsProbe:
    async def test_self_signed_certificate_fails_verification(
        self, https_base: str, session: aiohttp.ClientSession
    ) -> None:
        """With verify_tls (the default) an untrusted certificate is a "tls:" failure."""
        result = await probe(http(f"{https_base}/ok"), 2.0, session)
        assert not result.ok
        assert result.reason.startswith("tls: "), result.reason
        assert "self-signed" in result.reason or "self signed" in result.reason
        assert len(result.reason) <= 210

    async def test_verification_can_be_turned_off(
        self, https_base: str, session: aiohttp.ClientSession
    ) -> None:
        """verify_tls: false accepts the self-signed certificate."""
        result = await probe(http(f"{https_base}/ok", verify_tls=False), 2.0, session)
        assert (result.ok, result.reason) == (True, "http status 200")

    async def test_https_to_a_plain_http_server_is_a_tls_failure(
        self, http_base: str, session: aiohttp.ClientSession
    ) -> None:
        """Speaking TLS to a plain HTTP port fails with a reason, not an exception."""
        url = http_base.replace("http://", "https://") + "/ok"
        result = await probe(http(url, verify_tls=False), 2.0, session)
        assert not result.ok
        assert result.reason.startswith(("tls: ", "server disconnected", "connection reset"))
