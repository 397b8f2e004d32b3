"""The ``http:`` section (the status API) and the one parser of ``host:port``."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, Strict, field_validator

from anycast_announcer.config.document import short_repr
from anycast_announcer.config.types import Float, Int, StrictModel

__all__ = ["HttpConfig", "parse_host_port"]


def _host_name(value: str) -> str:
    # A DNS name or an IP literal, compared case-insensitively with the Host header.
    if not _HOST_NAME.fullmatch(value):
        raise ValueError(f"{short_repr(value)} is not a host name or IP address")
    return value.lower()


_HOST_NAME = re.compile(r"[A-Za-z0-9.:\[\]-]{1,253}")


def parse_host_port(text: str, *, allow_port_zero: bool) -> tuple[str, int]:
    """``"127.0.0.1:9179"`` or ``"[::1]:9179"`` as (host, port); ValueError otherwise.

    The one parser of listen addresses (the config file and the HTTP server). Port 0
    ("any free port") is for tests that start a server; a config file must name one.
    """
    host, sep, port = text.rpartition(":")
    # ASCII only: str.isdigit() also accepts Arabic-Indic and other digits.
    if (
        not sep
        or not _HOST_NAME.fullmatch(host)
        or not re.fullmatch(r"[0-9]{1,5}", port)
        or not (0 if allow_port_zero else 1) <= int(port) <= 65535
    ):
        raise ValueError(f"{short_repr(text)} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


HostName = Annotated[str, Strict(), AfterValidator(_host_name)]


class HttpConfig(StrictModel):
    """The status API."""

    listen: str = Field(
        default="127.0.0.1:9179", description="host:port ('[v6]:port' for IPv6), or '' to disable"
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value != "":
            parse_host_port(value, allow_port_zero=False)
        return value

    token_file: str | None = Field(
        default=None,
        min_length=1,
        description="file holding the bearer token for drain, undrain and reload; without "
        "it those endpoints answer 403. The sidecar refuses to start (a reload is refused) "
        "unless it is a regular file (not a symlink) owned by the sidecar's user, with no "
        "permission for group or others (0600 or 0400), holding one UTF-8 token of at "
        "least 16 printable characters without blanks (surrounding whitespace is "
        "stripped), and no directory above it is group- or world-writable (sticky ones "
        "such as /tmp excepted) or owned by a user other than root, the sidecar's or the "
        "file's owner. The CLI applies the same rules except the owner",
    )
    unix_socket: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^/",
        # sun_path holds 108 bytes, one of them the terminating NUL.
        max_length=107,
        description="also serve the API on this unix socket (absolute path, mode 0600)",
    )
    max_body_bytes: Int = Field(
        default=65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="larger request bodies are refused with 413",
    )
    max_connections: Int = Field(
        default=64,
        ge=4,
        le=4096,
        description="open API connections at most; beyond it the oldest idle one is closed",
    )
    header_timeout: Float = Field(
        default=5.0,
        ge=0.5,
        le=60,
        description="seconds a client has to send a complete request head; also how long "
        "an idle keep-alive connection stays open",
    )
    allowed_hosts: list[HostName] = Field(
        default_factory=list,
        description="Host header values accepted on the TCP listener besides loopback "
        "names and the listen address (protects against DNS rebinding)",
    )
