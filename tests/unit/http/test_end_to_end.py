"""The operator surface on the real supervisor: CLI -> HTTP -> Supervisor and back.

Fakes stand in only for the seams that leave the process (probes, addresses, ExaBGP);
the supervisor's own Control implementation answers the API. This proves the two halves,
built in parallel, fit: a drain from the CLI shows up in /status and withdraws the route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from anycast_announcer.app import Supervisor
from anycast_announcer.checks import ProbeResult
from anycast_announcer.cli import EXIT_FAILURE, EXIT_OK, main
from anycast_announcer.config import BgpConfig, Config, ExabgpConfig, HttpConfig, load_config
from anycast_announcer.core.inputs import AddressChanged
from anycast_announcer.exabgp.driver import DriverSnapshot, EndOfRibCallback, RoutesCallback
from anycast_announcer.http import serving
from anycast_announcer.http.token import TokenKeeper
from anycast_announcer.metrics import Metrics
from anycast_announcer.routes import Route, RouteKey
from anycast_announcer.supervisor import Seams
from anycast_announcer.workers import Submit
from tests.unit.http.fakes import TOKEN

PREFIX = "10.255.0.1/32"
CONFIG: dict[str, Any] = {
    "bgp": {
        "local_as": 65001,
        "router_id": "10.0.1.2",
        "peers": [{"address": "10.0.1.1", "peer_as": 65100}],
    },
    "services": [
        {
            "name": "web",
            "check": {"type": "tcp", "host": "127.0.0.1", "port": 9},
            "interval": 0.05,
            "timeout": 0.05,
            "rise": 1,
            "fall": 1,
        }
    ],
    "prefixes": [{"prefix": PREFIX, "services": ["web"], "bandwidth_mbps": 10000}],
    "drain": {"graceful_shutdown_hold": 0, "connection_timeout": 1},
}


class FakeDriver:
    """ExaBGP that acknowledges everything at once and has its one session up."""

    def __init__(
        self,
        on_session: Callable[[str, bool, str], None],
        on_routes: RoutesCallback,
        on_end_of_rib: EndOfRibCallback,
    ) -> None:
        self.desired: dict[RouteKey, Route] = {}
        self._on_session = on_session
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        self._on_session("10.0.1.1", True, "session established")
        await self._stopped.wait()

    def set_desired(self, routes: Mapping[RouteKey, Route]) -> None:
        self.desired = dict(routes)

    def reconfigure(self, bgp: BgpConfig, settings: ExabgpConfig) -> None:
        pass

    def snapshot(self) -> DriverSnapshot:
        return DriverSnapshot(
            4242, 0, True, frozenset({"10.0.1.1"}), len(self.desired), len(self.desired)
        )

    async def wait_synced(self) -> None:
        pass

    async def stop(self) -> None:
        self._stopped.set()


class AlwaysHealthy:
    async def probe(self, check: Any, timeout: float) -> ProbeResult:
        return ProbeResult(True, 0.001, "connected")


class AllPresent:
    async def present(self, interface: str, network: Any) -> bool:
        return True

    async def add(self, interface: str, network: Any) -> None: ...

    async def remove(self, interface: str, network: Any) -> None: ...


class AddressesPresent:
    """The event sources, reporting every configured address on its interface."""

    def __init__(self, submit: Submit) -> None:
        self._submit = submit

    async def open(self, config: Config) -> None:
        await self.configure(config)

    async def configure(self, config: Config) -> None:
        for prefix in config.prefixes:
            address = prefix.prefix.network_address
            self._submit(AddressChanged(prefix.interface, address, True))

    def close(self) -> None:
        pass


async def _poll(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout:g}s)")
        await asyncio.sleep(0.05)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, str, str]]:
    """A supervisor with fakes at its outer seams, served on 127.0.0.1 with a token."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(CONFIG))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    metrics = Metrics()
    tokens = TokenKeeper(str(token_file))
    supervisor = Supervisor(
        load_config(config_path),
        Seams(AlwaysHealthy(), AllPresent(), FakeDriver, AddressesPresent),
        config_path=str(config_path),
        metrics=metrics,
        reload_checks=[tokens.reload],
    )
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    http = HttpConfig(listen="127.0.0.1:1", token_file=str(token_file))
    http = http.model_copy(update={"listen": "127.0.0.1:0"})  # port 0: config forbids it
    try:
        async with serving(supervisor, metrics, http, tokens) as runner:
            assert runner is not None
            port = runner.addresses[0][1]
            yield supervisor, f"http://127.0.0.1:{port}", str(token_file)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def _status(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/status") as response:
        assert response.status == 200
        data: dict[str, Any] = await response.json()
        return data


async def test_drain_and_undrain_through_the_cli(
    running: tuple[Supervisor, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """announced -> CLI drain -> drained with the reason -> CLI undrain -> announced."""
    supervisor, url, token_file = running

    async def state_is(state: str) -> bool:
        return bool((await _status(url))["prefixes"][0]["state"] == state)

    await _poll(lambda: state_is("announced"), "the prefix never got announced")

    code = await asyncio.to_thread(
        main,
        ["drain", PREFIX, "--reason", "kernel upgrade", "--url", url, "--token-file", token_file],
    )
    assert code == EXIT_OK, capsys.readouterr()

    async def drained() -> bool:
        prefix = (await _status(url))["prefixes"][0]
        return bool(prefix["state"] != "announced" and prefix["drain_reason"] == "kernel upgrade")

    await _poll(drained, "the drain never showed in /status")
    await _poll(lambda: state_is("drained"), "the drained prefix was never withdrawn")
    assert supervisor.driver.desired == {}  # type: ignore[attr-defined]

    unknown = await asyncio.to_thread(
        main, ["drain", "10.9.9.9/32", "--url", url, "--token-file", token_file]
    )
    assert unknown == EXIT_FAILURE

    code = await asyncio.to_thread(main, ["undrain", "--url", url, "--token-file", token_file])
    assert code == EXIT_OK
    await _poll(lambda: state_is("announced"), "not announced again after undrain")

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["status", "--json", "--url", url]) == EXIT_OK
    out = capsys.readouterr().out
    status = json.loads(out[out.index("{") :])
    assert status["services"][0]["state"] == "up"
    assert status["exabgp"]["running"] is True


async def test_healthz_readyz_and_metrics_from_the_supervisor(
    running: tuple[Supervisor, str, str],
) -> None:
    """The probes feed /readyz and /metrics."""
    _, url, _ = running

    async def ready() -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
            return response.status == 200

    await _poll(ready, "never ready")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
    assert 'anycast_service_up{service="web"} 1.0' in text
    assert "anycast_probe_duration_seconds_count" in text


async def test_a_reload_re_reads_the_token_file(running: tuple[Supervisor, str, str]) -> None:
    """A replaced token takes over at the reload; an unsafe file rejects the reload and
    the token in force stays."""
    _, url, token_file = running
    new = "another-token-0123456789"
    path = Path(token_file)

    async def post(token: str, endpoint: str = "/reload") -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + endpoint, headers=headers) as response,
        ):
            return response.status

    await asyncio.to_thread(path.write_text, new)
    assert await post(TOKEN) == 200  # the reload itself, with the token in force then
    assert await post(TOKEN) == 401
    assert await post(new) == 200
    await asyncio.to_thread(path.chmod, 0o644)
    assert await post(new) == 409  # unsafe now: the reload is refused...
    assert await post(new, "/undrain") == 200  # ... and the token in force stays
