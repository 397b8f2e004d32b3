"""The ``drain:`` section: how a server is taken out of service without breaking sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from anycast_announcer.config.types import Float, Int, Seconds, StrictModel

__all__ = ["CommandHook", "DrainConfig", "DrainHook", "HttpHook"]


class CommandHook(StrictModel):
    """Run a command (no shell); exit 0 means the application accepted the drain."""

    type: Literal["command"] = Field(description="selects this form")
    argv: list[str] = Field(min_length=1, description="program and arguments; no shell")


class HttpHook(StrictModel):
    """Call a URL on the local application (e.g. its admin endpoint)."""

    type: Literal["http"] = Field(description="selects this form")
    url: str = Field(pattern=r"^https?://[^/\s]+", description="http:// or https:// URL")
    method: Literal["GET", "POST", "PUT"] = Field(
        default="POST", description="a 2xx answer means the application accepted the drain"
    )


DrainHook = Annotated[CommandHook | HttpHook, Field(discriminator="type")]


class DrainConfig(StrictModel):
    """How a drain takes a server out of service without breaking its sessions.

    Order: run ``hook`` (the prefix stays announced), wait until established connections
    to the prefix's ports fall to ``connection_threshold`` (or ``connection_timeout``),
    re-announce with GRACEFUL_SHUTDOWN 65535:0 (RFC 8326) for ``graceful_shutdown_hold``
    seconds, then withdraw.
    """

    hook: DrainHook | None = Field(
        default=None,
        description="asks the application to shed its connections first; unset: no hook",
    )
    hook_timeout: Seconds = Field(
        default=10.0,
        description="seconds the hook may take; a failed hook is logged and the drain goes on",
    )
    connection_threshold: Int = Field(
        default=0,
        ge=0,
        description="the drain moves on once established connections to the prefix's "
        "ports are at most this many",
    )
    connection_timeout: Seconds = Field(
        default=30.0, description="seconds to wait for connections before moving on anyway"
    )
    graceful_shutdown_hold: Float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="seconds the route stays announced with GRACEFUL_SHUTDOWN 65535:0 "
        "before the withdrawal; 0 withdraws at once",
    )
    state_file: str | None = Field(
        default=None,
        description="where drains are persisted so they survive restarts (the directory "
        "must be writable by the sidecar); unset: a restart forgets them",
    )
    drain_file: str | None = Field(
        default=None,
        description="while this file exists, every prefix is drained (for tools that "
        "cannot speak HTTP); unset: no such file is watched",
    )
