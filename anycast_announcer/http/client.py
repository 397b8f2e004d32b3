"""A small client of the status API for the CLI, over TCP or a unix socket.

Stdlib only (``http.client``), so ``anycast-announcer status`` starts in a blink and needs
nothing the sidecar does not. It also renders the status as the tables people read.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_URL",
    "ApiAnswer",
    "SidecarUnreachableError",
    "call",
    "format_status",
]

DEFAULT_URL = "http://127.0.0.1:9179"


class SidecarUnreachableError(Exception):
    """No HTTP answer at all: nothing listens, wrong socket path, timeout, garbage."""


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """An HTTP answer; ``data`` is the parsed JSON body, or None if it was not JSON."""

    status: int
    data: Any
    text: str

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    def error_message(self) -> str:
        """What the sidecar said went wrong, or a description of the odd answer."""
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), str):
            return f"{self.data['error']} (HTTP {self.status})"
        return f"unexpected answer: HTTP {self.status}: {self.text[:200]}"


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket; the host name only fills the Host header."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _connection(
    url: str, unix_socket: str | None, timeout: float
) -> tuple[http.client.HTTPConnection, str]:
    """A connection and the path prefix to put before endpoint paths."""
    if unix_socket is not None:
        return _UnixHTTPConnection(unix_socket, timeout), ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    host = parts.hostname
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    return connection, parts.path.rstrip("/")


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, FileNotFoundError):
        return "no such socket file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name ({error.strerror})"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(error, http.client.HTTPException):
        return f"not an HTTP answer ({type(error).__name__})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__


def call(
    method: str,
    path: str,
    *,
    url: str = DEFAULT_URL,
    unix_socket: str | None = None,
    token: str | None = None,
    body: dict[str, Any] | None = None,
    timeout: float = 10.0,
) -> ApiAnswer:
    """One request; SidecarUnreachableError without an HTTP answer, ValueError for a bad URL."""
    connection, prefix = _connection(url, unix_socket, timeout)
    where = f"unix socket {unix_socket}" if unix_socket is not None else url
    headers = {"Accept": "application/json", "User-Agent": "anycast-announcer-cli"}
    payload: bytes | None = None
    if body is not None:
        payload = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, prefix + path, body=payload, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as error:
        raise SidecarUnreachableError(
            f"cannot reach the sidecar at {where}: {_describe(error)}"
        ) from None
    finally:
        connection.close()
    text = raw.decode("utf-8", "replace")
    data: Any = None
    if response.getheader("Content-Type", "").startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    return ApiAnswer(status=response.status, data=data, text=text)


# -- the human view of GET /status ------------------------------------------------


def _clean(value: object) -> str:
    """One printable line: reasons hold command output, which may hold escape sequences."""
    text = "" if value is None else str(value)
    return "".join(char if char.isprintable() else "\ufffd" for char in text)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return [line.rstrip() for line in lines]


def _bandwidth(mbps: object) -> str:
    if not isinstance(mbps, int | float) or isinstance(mbps, bool):
        return "-"
    return f"{mbps / 1000:g} Gbit/s" if mbps >= 1000 else f"{mbps:g} Mbit/s"


def _last_result(service: dict[str, Any]) -> str:
    results = service.get("last_results") or []
    if not results:
        return "-"
    last = results[-1]
    verdict = "ok" if last.get("ok") else "FAIL"
    latency = last.get("latency")
    shown = f" {latency * 1000:.1f}ms" if isinstance(latency, int | float) else ""
    return f"{verdict}{shown} {_clean(last.get('reason'))}"


def format_status(data: dict[str, Any]) -> str:
    """The tables ``anycast-announcer status`` prints (the JSON is there for scripts)."""
    lines: list[str] = []
    prefixes = data.get("prefixes") or []
    rows = []
    for prefix in prefixes:
        reason = _clean(prefix.get("reason"))
        if prefix.get("drain_phase") not in {None, "none"}:
            reason += f" [drain: {_clean(prefix.get('drain_phase'))}"
            if prefix.get("drain_reason"):
                reason += f", {_clean(prefix.get('drain_reason'))}"
            reason += "]"
        rows.append(
            [
                _clean(prefix.get("prefix")),
                _clean(prefix.get("state")),
                _bandwidth(prefix.get("bandwidth_mbps")),
                reason,
            ]
        )
    lines += _table(["PREFIX", "STATE", "BANDWIDTH", "REASON"], rows)
    lines.append("")
    rows = [
        [
            _clean(service.get("name")),
            _clean(service.get("check_type")),
            _clean(service.get("state")),
            _last_result(service),
        ]
        for service in data.get("services") or []
    ]
    lines += _table(["SERVICE", "CHECK", "STATE", "LAST RESULT"], rows)
    lines.append("")
    rows = [
        [
            _clean(peer.get("address")),
            _clean(peer.get("peer_as")),
            _clean(peer.get("state")),
            _clean(peer.get("last_change_reason") or ""),
        ]
        for peer in data.get("peers") or []
    ]
    lines += _table(["PEER", "AS", "STATE", "LAST CHANGE"], rows)
    lines.append("")
    exabgp = data.get("exabgp") or {}
    lines.append(
        f"exabgp: {'running' if exabgp.get('running') else 'NOT RUNNING'}"
        f" (pid {_clean(exabgp.get('pid'))}),"
        f" {'connected' if exabgp.get('connected') else 'not connected'},"
        f" {_clean(exabgp.get('restarts'))} restarts,"
        f" {_clean(exabgp.get('routes_acknowledged'))}/{_clean(exabgp.get('routes_desired'))}"
        " routes acknowledged"
    )
    if data.get("last_reload_error"):
        lines.append(f"last reload failed: {_clean(data['last_reload_error'])}")
    return "\n".join(lines)
