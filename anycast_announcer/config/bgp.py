"""The ``bgp:`` section: this server's BGP identity and its sessions to the leaves."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict, field_validator, model_validator

from anycast_announcer.config.syntax import md5_password_problem
from anycast_announcer.config.types import AsNumber, IPAddress, IPv4, StrictModel, WholeSeconds

__all__ = ["BgpConfig", "PeerConfig"]


def _md5_password(value: str) -> str:
    problem = md5_password_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Md5Password = Annotated[str, Strict(), AfterValidator(_md5_password)]


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
