"""The ``services:`` section: each local service and the probe that judges it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from anycast_announcer.config.types import Bool, Int, Name, Port, Seconds, StrictModel

__all__ = ["CheckConfig", "CommandCheck", "HttpCheck", "ServiceConfig", "TcpCheck"]


class TcpCheck(StrictModel):
    """Healthy when a TCP connection to host:port succeeds."""

    type: Literal["tcp"] = Field(description="selects this form")
    host: str = Field(min_length=1, description="address or name to connect to")
    port: Port = Field(description="TCP port to connect to")


class HttpCheck(StrictModel):
    """Healthy when a GET returns one of the expected statuses (and the body matches)."""

    type: Literal["http", "https"] = Field(description="selects this form")
    url: str = Field(pattern=r"^https?://[^/\s]+", description="http:// or https:// URL")
    expected_status: list[Annotated[Int, Field(ge=100, le=599)]] = Field(
        default=[200],
        min_length=1,
        description="statuses that count as healthy; redirects are not followed",
    )
    body_regex: str | None = Field(
        default=None,
        description="Python regex searched in the first 64 KiB of the body; unset: the "
        "body is not read",
    )
    verify_tls: Bool = Field(
        default=True, description="https only: false skips certificate verification"
    )
    host_header: str | None = Field(
        default=None, min_length=1, description="Host header to send; default: the URL's host"
    )

    @field_validator("body_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _scheme_matches_type(self) -> HttpCheck:
        scheme = self.url.split("://", 1)[0].lower()
        if scheme != self.type:
            raise ValueError(f"url scheme {scheme!r} does not match check type {self.type!r}")
        return self


class CommandCheck(StrictModel):
    """Healthy when the command exits 0 within the timeout."""

    type: Literal["command"] = Field(description="selects this form")
    argv: list[str] = Field(min_length=1, description="program and arguments; no shell")
    cwd: str | None = Field(
        default=None,
        description="working directory of the command; default: the sidecar's own",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="variables added to the sidecar's environment for the command",
    )


CheckConfig = Annotated[TcpCheck | HttpCheck | CommandCheck, Field(discriminator="type")]


class ServiceConfig(StrictModel):
    """A local service and how to probe it."""

    name: Name
    check: CheckConfig = Field(description="the probe; its `type` selects one of the forms")
    interval: Seconds = Field(default=1.0, description="seconds between probes")
    timeout: Seconds = Field(
        default=0.5,
        description="seconds a probe may take (it fails after); at most interval. A "
        "command check's whole process group is killed on timeout",
    )
    rise: Int = Field(default=2, ge=1, le=100, description="consecutive successes to go up")
    fall: Int = Field(default=2, ge=1, le=100, description="consecutive failures to go down")
    fast_interval: Seconds | None = Field(
        default=None,
        description="re-probe this soon while a streak is changing the service's state "
        "(after a first failure, or a first success while down), so fall and rise are "
        "confirmed in a fraction of the interval; default: interval / 5",
    )
    listener_events: Bool = Field(
        default=True,
        description="for tcp and http(s) checks of a local address: take the service down "
        "the moment its listening socket closes and no other socket serves the address "
        "and port (kernel events, no polling)",
    )
    pid_file: str | None = Field(
        default=None,
        min_length=2,
        max_length=4096,
        pattern=r"^/",
        description="take the service down the moment the process named in this file exits",
    )
    systemd_unit: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9:_.@\\-]{1,250}\.(service|socket|target|mount|scope)$",
        description="take the service down the moment this systemd unit stops being active "
        "(D-Bus, detection.systemd_bus)",
    )

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ServiceConfig:
        # A probe that may outlive its interval would make the schedule drift.
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout}s) must not exceed interval ({self.interval}s)"
            )
        if self.fast_interval is not None and self.fast_interval > self.interval:
            raise ValueError(
                f"fast_interval ({self.fast_interval}s) must not exceed interval ({self.interval}s)"
            )
        return self

    @property
    def confirm_interval(self) -> float:
        """The interval between probes while a streak is changing the service's state."""
        return self.fast_interval if self.fast_interval is not None else self.interval / 5
