"""The ``drain:`` section: how a server is taken out of service without breaking sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from anycast_announcer.config.types import Float, Int, Seconds, StrictModel

__all__ = ["CommandHook", "DrainConfig", "DrainHook", "HttpHook"]


class CommandHook(StrictModel):
    """Run a command (no shell); exit 0 means the application accepted the drain."""

    type: Literal["command"]
    argv: list[str] = Field(min_length=1)


class HttpHook(StrictModel):
    """Call a URL on the local application (e.g. its admin endpoint)."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://[^/\s]+", description="http:// or https:// URL")
    method: Literal["GET", "POST", "PUT"] = "POST"


DrainHook = Annotated[CommandHook | HttpHook, Field(discriminator="type")]


class DrainConfig(StrictModel):
    """How a drain takes a server out of service without breaking its sessions.

    Order: run ``hook`` (the prefix stays announced), wait until established connections
    to the prefix's ports fall to ``connection_threshold`` (or ``connection_timeout``),
    re-announce with GRACEFUL_SHUTDOWN 65535:0 (RFC 8326) for ``graceful_shutdown_hold``
    seconds, then withdraw.
    """

    hook: DrainHook | None = None
    hook_timeout: Seconds = 10.0
    connection_threshold: Int = Field(default=0, ge=0)
    connection_timeout: Seconds = 30.0
    graceful_shutdown_hold: Float = Field(default=5.0, ge=0, le=3600)
    state_file: str | None = Field(
        default=None, description="where a drain is persisted so it survives restarts"
    )
    drain_file: str | None = Field(
        default=None, description="while this file exists, every prefix is drained"
    )
