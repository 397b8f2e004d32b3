"""The CLI's status/drain/undrain/reload against a real API server with a fake Control."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from anycast_announcer.cli import EXIT_FAILURE, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from anycast_announcer.http import start_http
from anycast_announcer.status import ControlResult
from tests.unit.http.fakes import TOKEN, FakeControl, make_app, replace


@dataclasses.dataclass
class Sidecar:
    control: FakeControl
    url: str
    socket: str


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    """The API on 127.0.0.1 (free port) and on a unix socket."""
    control = FakeControl()
    path = str(tmp_path / "api.sock") if len(str(tmp_path)) < 90 else f"/tmp/aac-{os.getpid()}"
    runner = await start_http(make_app(control), listen="127.0.0.1:0", unix_socket=path)
    port = next(address[1] for address in runner.addresses if isinstance(address, tuple))
    try:
        yield Sidecar(control, f"http://127.0.0.1:{port}", path)
    finally:
        await runner.cleanup()


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


async def cli(*argv: str) -> int:
    """main() in a thread, so the server keeps running on this test's loop."""
    return await asyncio.to_thread(main, list(argv))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestStatus:
    async def test_human_tables(self, sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
        """Prefixes with state, bandwidth and reason; services; peers; ExaBGP."""
        assert await cli("status", "--url", sidecar.url) == EXIT_OK
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines[0].split() == ["PREFIX", "STATE", "BANDWIDTH", "REASON"]
        assert lines[1].split()[:4] == ["10.255.0.1/32", "announced", "25", "Gbit/s"]
        assert "10.255.0.53/32" in lines[2]
        assert "withdrawn" in lines[2]
        assert "service dns is down: timeout after 0.5s" in lines[2]
        assert any(line.split()[:3] == ["dns", "command", "down"] for line in lines)
        assert "FAIL 500.0ms timeout after 0.5s" in out
        assert any(line.split()[:3] == ["fd00:1::1", "65100", "down"] for line in lines)
        assert "exabgp: running (pid 4242), connected, 1 restarts, 2/2 routes" in out

    async def test_json(self, sidecar: Sidecar, capsys: pytest.CaptureFixture[str]) -> None:
        """--json prints the API's document for scripts."""
        assert await cli("status", "--json", "--url", sidecar.url) == EXIT_OK
        data = json.loads(capsys.readouterr().out)
        assert data["prefixes"][1]["state"] == "withdrawn"

    async def test_over_unix_socket(
        self, sidecar: Sidecar, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--socket talks HTTP over the unix socket."""
        assert await cli("status", "--socket", sidecar.socket) == EXIT_OK
        assert "10.255.0.1/32" in capsys.readouterr().out

    async def test_control_characters_are_not_sent_to_the_terminal(
        self, sidecar: Sidecar, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A probe's output with escape sequences cannot repaint the operator's terminal."""
        snapshot = sidecar.control.snapshot
        prefix = replace(snapshot.prefixes[1], reason="exit status 1: \x1b[2Jgone")
        sidecar.control.snapshot = replace(snapshot, prefixes=(prefix,))
        assert await cli("status", "--url", sidecar.url) == EXIT_OK
        out = capsys.readouterr().out
        assert "\x1b" not in out
        assert "exit status 1: \ufffd[2Jgone" in out


class TestMutating:
    async def test_drain_with_prefixes_and_reason(
        self, sidecar: Sidecar, token_file: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """drain PREFIX --reason sends both and prints what the sidecar did."""
        code = await cli(
            "drain",
            "10.255.0.1/32",
            "--reason",
            "kernel upgrade",
            "--url",
            sidecar.url,
            "--token-file",
            token_file,
        )
        assert code == EXIT_OK
        # The server's log lines share stdout in this test; the CLI prints the last line.
        assert capsys.readouterr().out.splitlines()[-1] == "draining: 10.255.0.1/32"
        assert sidecar.control.calls == [("drain", ["10.255.0.1/32"], "kernel upgrade")]

    async def test_token_file_from_environment(
        self, sidecar: Sidecar, token_file: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """$ANYCAST_ANNOUNCER_TOKEN_FILE is the default --token-file."""
        monkeypatch.setenv("ANYCAST_ANNOUNCER_TOKEN_FILE", token_file)
        assert await cli("undrain", "--socket", sidecar.socket) == EXIT_OK
        assert sidecar.control.calls == [("undrain", None)]

    async def test_reload(self, sidecar: Sidecar, token_file: str) -> None:
        """reload is accepted; a refused reload is exit 1 with the config error."""
        assert await cli("reload", "--url", sidecar.url, "--token-file", token_file) == EXIT_OK
        sidecar.control.reload_result = ControlResult(ok=False, message="bad.yaml: bgp: missing")
        assert await cli("reload", "--url", sidecar.url, "--token-file", token_file) == 1

    async def test_refused_drain_prints_the_message(
        self, sidecar: Sidecar, token_file: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An error answer is exit 1 and its message on stderr."""
        code = await cli("drain", "10.9.9.9/32", "--url", sidecar.url, "--token-file", token_file)
        assert code == EXIT_FAILURE
        assert capsys.readouterr().err == "error: unknown prefix 10.9.9.9/32 (HTTP 409)\n"

    async def test_invalid_prefix_is_explained_by_the_sidecar(
        self, sidecar: Sidecar, token_file: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The 422 message names the argument."""
        code = await cli("drain", "web", "--url", sidecar.url, "--token-file", token_file)
        assert code == EXIT_FAILURE
        assert "prefixes[0]: 'web' is not an IPv4 or IPv6 prefix" in capsys.readouterr().err

    async def test_missing_token_hints_at_the_option(
        self,
        sidecar: Sidecar,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Without a token the 401 is shown with a hint where to put one."""
        monkeypatch.delenv("ANYCAST_ANNOUNCER_TOKEN_FILE", raising=False)
        assert await cli("drain", "--url", sidecar.url) == EXIT_FAILURE
        err = capsys.readouterr().err
        assert "missing bearer token" in err
        assert "hint: pass -c CONFIG (its http.token_file), --token-file" in err

    async def test_unsafe_token_file_is_a_usage_error(
        self, sidecar: Sidecar, token_file: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A world-readable token file is refused before anything is sent."""
        Path(token_file).chmod(0o644)  # noqa: ASYNC240  # a local file in a test
        assert await cli("drain", "--url", sidecar.url, "--token-file", token_file) == EXIT_USAGE
        assert "chmod 600" in capsys.readouterr().err
        assert sidecar.control.calls == []

    async def test_no_token_configured_on_the_sidecar(
        self, token_file: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A sidecar without http.token_file says so (403), exit 1."""
        app: web.Application = make_app(token=None)
        runner = await start_http(app, listen="127.0.0.1:0", unix_socket=None)
        try:
            port = runner.addresses[0][1]
            code = await cli(
                "reload", "--url", f"http://127.0.0.1:{port}", "--token-file", token_file
            )
        finally:
            await runner.cleanup()
        assert code == EXIT_FAILURE
        assert "no token configured (http.token_file)" in capsys.readouterr().err


MISSING_TOKEN_FILE = "/nonexistent/token"  # noqa: S105  # a path that does not exist


def write_config(tmp_path: Path, **http: str) -> str:
    """The smallest config whose http section is ``http``."""
    path = tmp_path / "sidecar.yaml"
    document = {
        "bgp": {
            "local_as": 65101,
            "router_id": "10.0.0.11",
            "peers": [{"address": "192.0.2.1", "peer_as": 65001}],
        },
        "services": [{"name": "web", "check": {"type": "tcp", "host": "127.0.0.1", "port": 80}}],
        "prefixes": [{"prefix": "198.51.100.10/32", "services": ["web"]}],
        "http": http,
    }
    path.write_text(json.dumps(document))
    return str(path)


class TestFromConfig:
    """-c CONFIG: the sidecar is reached where its config says, with its token file."""

    async def test_status_follows_http_listen(
        self, sidecar: Sidecar, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        listen = sidecar.url.removeprefix("http://")
        assert await cli("status", "-c", write_config(tmp_path, listen=listen)) == EXIT_OK
        assert "10.255.0.1/32" in capsys.readouterr().out

    async def test_wildcard_listen_is_reached_over_loopback(
        self, sidecar: Sidecar, tmp_path: Path
    ) -> None:
        port = sidecar.url.rpartition(":")[2]
        config = write_config(tmp_path, listen=f"0.0.0.0:{port}")
        assert await cli("status", "--json", "-c", config) == EXIT_OK

    async def test_unix_socket_when_tcp_is_off(self, sidecar: Sidecar, tmp_path: Path) -> None:
        config = write_config(tmp_path, listen="", unix_socket=sidecar.socket)
        assert await cli("status", "-c", config) == EXIT_OK

    async def test_drain_reads_the_token_file_of_the_config(
        self, sidecar: Sidecar, tmp_path: Path, token_file: str
    ) -> None:
        listen = sidecar.url.removeprefix("http://")
        config = write_config(tmp_path, listen=listen, token_file=token_file)
        assert await cli("drain", "-c", config, "--reason", "upgrade") == EXIT_OK
        assert await cli("reload", "-c", config) == EXIT_OK
        assert sidecar.control.calls[0] == ("drain", None, "upgrade")
        assert len(sidecar.control.calls) == 2

    async def test_command_line_wins_over_the_config(
        self, sidecar: Sidecar, tmp_path: Path, token_file: str
    ) -> None:
        """--url beats http.listen, --token-file beats http.token_file."""
        config = write_config(
            tmp_path, listen=f"127.0.0.1:{_closed_port()}", token_file=MISSING_TOKEN_FILE
        )
        code = await cli("undrain", "-c", config, "--url", sidecar.url, "--token-file", token_file)
        assert code == EXIT_OK

    async def test_config_wins_over_the_environment(
        self,
        sidecar: Sidecar,
        tmp_path: Path,
        token_file: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("ANYCAST_ANNOUNCER_TOKEN_FILE", token_file)
        listen = sidecar.url.removeprefix("http://")
        config = write_config(tmp_path, listen=listen, token_file=MISSING_TOKEN_FILE)
        assert await cli("undrain", "-c", config) == EXIT_USAGE
        assert "token file /nonexistent/token: not found" in capsys.readouterr().err

    def test_no_api_in_the_config_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["status", "-c", write_config(tmp_path, listen="")]) == EXIT_USAGE
        assert "serves no API" in capsys.readouterr().err

    def test_invalid_config_is_a_usage_error_without_traceback(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = write_config(tmp_path, listen="not-a-port")
        assert main(["drain", "-c", config]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "http.listen" in err
        assert "Traceback" not in err

    def test_missing_config_file_is_named(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["status", "-c", str(tmp_path / "absent.yaml")]) == EXIT_USAGE
        assert "absent.yaml" in capsys.readouterr().err


class TestCannotConnect:
    def test_connection_refused_is_exit_3(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Nothing listening: exit 3 and one line saying where and why."""
        url = f"http://127.0.0.1:{_closed_port()}"
        assert main(["status", "--url", url]) == EXIT_UNREACHABLE
        assert capsys.readouterr().err == (
            f"error: cannot reach the sidecar at {url}: connection refused\n"
        )

    def test_missing_socket_is_exit_3(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A wrong --socket path is named."""
        path = str(tmp_path / "nope.sock")
        assert main(["status", "--socket", path]) == EXIT_UNREACHABLE
        assert f"cannot reach the sidecar at unix socket {path}: no such socket file" in (
            capsys.readouterr().err
        )

    def test_real_process_prints_no_traceback(self) -> None:
        """Run as a program: exit 3 and a single line on stderr."""
        url = f"http://127.0.0.1:{_closed_port()}"
        result = subprocess.run(
            [sys.executable, "-m", "anycast_announcer", "drain", "--url", url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == EXIT_UNREACHABLE
        assert "Traceback" not in result.stderr
        assert result.stderr.strip() == (
            f"error: cannot reach the sidecar at {url}: connection refused"
        )


class TestUsage:
    @pytest.mark.parametrize(
        "argv",
        [
            ["status", "--url", "http://x", "--socket", "/x"],
            ["status", "--timeout", "0"],
            ["drain", "--bogus"],
            ["status", "extra"],
        ],
    )
    def test_bad_arguments_exit_2(self, argv: list[str]) -> None:
        """argparse errors are exit 2."""
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == EXIT_USAGE

    @pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:9179", "http://h:99999"])
    def test_bad_url_exit_2(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A URL we cannot use is the user's mistake, named."""
        assert main(["status", "--url", url]) == EXIT_USAGE
        assert "error:" in capsys.readouterr().err
