"""The ``bgp:`` section: this server's BGP identity and its sessions to the leaves."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    field_validator,
    model_validator,
)

from anycast_announcer.config.syntax import md5_password_problem
from anycast_announcer.config.types import (
    AsNumber,
    Float,
    Int,
    IPAddress,
    IPv4,
    StrictModel,
    WholeSeconds,
)

__all__ = ["BfdConfig", "BgpConfig", "PeerConfig"]


def _md5_password(value: str) -> str:
    problem = md5_password_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Md5Password = Annotated[str, Strict(), AfterValidator(_md5_password)]


# FRR's bfdd accepts 10 ms to 60 s; below 50 ms a Python speaker on a busy host is
# more likely to raise false alarms than to detect anything sooner (docs/bfd.md).
BfdInterval = Annotated[
    Float, Field(ge=0.01, le=60.0, description="seconds, 0.01 to 60 (FRR's range)")
]


class BfdConfig(StrictModel):
    """BFD (RFC 5880/5881) for one BGP session; the defaults are FRR's (0.3 s x 3)."""

    min_tx: BfdInterval = Field(default=0.3, description="desired transmit interval, seconds")
    min_rx: BfdInterval = Field(default=0.3, description="required receive interval, seconds")
    multiplier: Int = Field(
        default=3, ge=2, le=255, description="packets missed before the session is down"
    )


def _bfd_shorthand(value: object) -> object:
    # `bfd: true` means FRR's defaults; `bfd: false` means no BFD, like leaving it out.
    if value is True:
        return {}
    if value is False:
        return None
    return value


class PeerConfig(StrictModel):
    """One BGP session to a leaf switch."""

    address: IPAddress = Field(description="the leaf's address on the link to this server")
    peer_as: AsNumber
    local_address: IPAddress | None = Field(
        default=None, description="source address of the session; default: chosen by the kernel"
    )
    md5_password: Md5Password | None = Field(
        default=None,
        description="TCP-MD5 (RFC 2385) password: 1 to 80 printable ASCII characters, "
        "no blanks, quotes or backslashes",
    )
    bfd: Annotated[BfdConfig | None, BeforeValidator(_bfd_shorthand)] = Field(
        default=None,
        description="BFD for this session: true for 0.3 s x 3, or {min_tx, min_rx, "
        "multiplier}; a change at reload goes through a Poll Sequence, ExaBGP keeps running",
    )

    @model_validator(mode="after")
    def _same_family(self) -> PeerConfig:
        if self.local_address is not None and self.local_address.version != self.address.version:
            raise ValueError(
                f"local_address {self.local_address} is IPv{self.local_address.version} "
                f"but address {self.address} is IPv{self.address.version}"
            )
        return self


class BgpConfig(StrictModel):
    """This server's BGP identity and its sessions."""

    local_as: AsNumber
    router_id: IPv4 = Field(description="BGP identifier, an IPv4 address unique in the fabric")
    hold_time: WholeSeconds = Field(
        default=9,
        description="whole seconds, 0 or 3 - 65535 (RFC 4271); 0 disables keepalives. "
        "A leaf with a lower hold time wins the negotiation",
    )
    peers: list[PeerConfig] = Field(
        min_length=1, description="the leaf switches this server has BGP sessions with"
    )
    bandwidth_split: Literal["up_sessions", "none"] = Field(
        default="up_sessions",
        description=(
            "how a prefix's bandwidth is spread over this server's sessions of its address "
            "family: 'up_sessions' divides it by the number of established sessions, so a "
            "dual-homed server is not counted twice and its surviving session carries the "
            "whole weight; 'none' sends the full bandwidth on every session"
        ),
    )

    @field_validator("hold_time")
    @classmethod
    def _hold_time_range(cls, value: int) -> int:
        # RFC 4271 4.2: zero, or at least three seconds.
        if value != 0 and not 3 <= value <= 65535:
            raise ValueError("must be 0 or between 3 and 65535 seconds")
        return value
