"""A small client of the status API for the CLI, over TCP or a unix socket.

The transport is the stdlib's ``http.client``; the answer of ``GET /status`` is read into
the same models the sidecar serializes (``anycast_announcer.status``), and rendered as the
tables people read.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from anycast_announcer.status import (
    PeerStatus,
    PrefixStatus,
    RescueGateStatus,
    RescueStatus,
    ServiceStatus,
    SidecarStatus,
)

__all__ = [
    "DEFAULT_URL",
    "ApiAnswer",
    "SidecarUnreachableError",
    "call",
    "clean",
    "format_status",
    "table",
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


def _describe(error: BaseException) -> str:  # noqa: PLR0911  # one phrase per error type, most specific first
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


def _bandwidth(mbps: float | None) -> str:
    if mbps is None:
        return "-"
    return f"{mbps / 1000:g} Gbit/s" if mbps >= 1000 else f"{mbps:g} Mbit/s"


def _when(at: float | None, now: float) -> str:
    """A time as people read it in a table: how long ago."""
    if at is None or not math.isfinite(at):
        return "-"
    ago = max(0.0, now - at)
    if ago < 120:
        return f"{ago:.0f}s ago"
    if ago < 7200:
        return f"{ago / 60:.0f}m ago"
    return f"{ago / 3600:.1f}h ago"


def _last_result(service: ServiceStatus) -> str:
    if not service.last_results:
        return "-"
    last = service.last_results[-1]
    verdict = "ok" if last.ok else "FAIL"
    return f"{verdict} {last.latency * 1000:.1f}ms {_clean(last.reason)}"


def _prefix_reason(prefix: PrefixStatus) -> str:
    reason = _clean(prefix.reason)
    if prefix.drain_phase != "none":
        reason += f" [drain: {prefix.drain_phase}"
        if prefix.drain_reason:
            reason += f", {_clean(prefix.drain_reason)}"
        reason += "]"
    return reason


def _peer_change(peer: PeerStatus, now: float) -> str:
    if peer.last_change_at is None:
        return "-"
    reason = f" ({_clean(peer.last_change_reason)})" if peer.last_change_reason else ""
    return _when(peer.last_change_at, now) + reason


def _bfd(peer: PeerStatus) -> str:
    bfd = peer.bfd
    if bfd is None:
        return "off"
    text: str = bfd.state
    if bfd.transmit_interval is not None and bfd.detection_time is not None:
        text += f" {bfd.transmit_interval:g}s/{bfd.detection_time:g}s"
    if bfd.state != "up":
        text += f" ({_clean(bfd.local_diag)})"
    return text + f" remote {bfd.remote_discriminator}, {bfd.state_changes} changes"


def _gate(gate: RescueGateStatus, now: float) -> str:
    """``waiting_for_eor since 3s ago, opens anyway in 7s`` / ``open (end_of_rib) ...``."""
    opened = f" ({_clean(gate.opened_by)})" if gate.opened_by else ""
    deadline = f", opens anyway in {gate.opens_in:.0f}s" if gate.opens_in is not None else ""
    return f"{gate.state}{opened} since {_when(gate.since, now)}{deadline}"


def _rescue_lines(rescue: RescueStatus, now: float) -> list[str]:
    state = "installed" if rescue.installed else "NOT INSTALLED"
    lines = [
        f"rescue: {state} (member {_clean(rescue.member)}), "
        f"{rescue.replicated.packets} replicated, {rescue.icmp_relayed.packets} ICMP relayed, "
        f"{rescue.orphans.packets} orphan packets reset"
    ]
    if rescue.last_error:
        lines.append(f"rescue failed: {_clean(rescue.last_error)}")
    if (membership := rescue.membership) is not None:
        members = ", ".join(
            _clean(m.address) + ("" if m.present else f" (held down {m.held_for or 0:.0f}s)")
            for m in membership.members
        )
        ignored = sum(membership.ignored.values())
        lines.append(
            f"rescue members learnt ({_clean(membership.community)}, member route "
            f"{'announced' if membership.announced else 'NOT announced'}): "
            f"{members or 'none'}; {ignored} routes ignored"
        )
        if (gate := membership.gate) is not None:
            lines.append(f"rescue start-up gate: {_gate(gate, now)}")
    lines += _table(
        ["RESCUE PEER", "HANDED TO IT", "RESCUED FROM IT", "REFUSED"],
        [
            [
                _clean(peer.peer),
                f"{peer.forwarded.packets} pkts / {peer.forwarded.bytes} B",
                f"{peer.received.packets} pkts / {peer.received.bytes} B",
                str(peer.refused.packets),
            ]
            for peer in rescue.peers
        ],
    )
    return lines


def format_status(status: SidecarStatus, now: float | None = None) -> str:
    """The tables ``anycast-announcer status`` prints (the JSON is there for scripts)."""
    now = time.time() if now is None else now
    lines = _table(
        ["PREFIX", "STATE", "BANDWIDTH", "REASON"],
        [
            [_clean(p.prefix), p.state, _bandwidth(p.bandwidth_mbps), _prefix_reason(p)]
            for p in status.prefixes
        ],
    )
    lines.append("")
    lines += _table(
        ["SERVICE", "CHECK", "STATE", "LAST RESULT"],
        [[_clean(s.name), _clean(s.check_type), s.state, _last_result(s)] for s in status.services],
    )
    lines.append("")
    lines += _table(
        ["PEER", "AS", "STATE", "LAST CHANGE", "BFD"],
        [
            [_clean(p.address), str(p.peer_as), p.state, _peer_change(p, now), _bfd(p)]
            for p in status.peers
        ],
    )
    lines.append("")
    exabgp = status.exabgp
    lines.append(
        f"exabgp: {'running' if exabgp.running else 'NOT RUNNING'} (pid {exabgp.pid}),"
        f" {'connected' if exabgp.connected else 'not connected'},"
        f" {exabgp.restarts} restarts,"
        f" {exabgp.routes_acknowledged}/{exabgp.routes_desired} routes acknowledged"
    )
    if status.rescue is not None:
        lines += ["", *_rescue_lines(status.rescue, now)]
    if status.sidecar_fault is not None:
        fault = status.sidecar_fault
        lines.append(
            f"SIDECAR FAULT ({_clean(fault.kind)}, {_when(fault.at, now)}): {_clean(fault.detail)}"
        )
    if status.last_reload_error:
        lines.append(f"last reload failed: {_clean(status.last_reload_error)}")
    return "\n".join(lines)


# The same terminal rules for the history's tables (``history_text``).
clean = _clean
table = _table
