"""The ``prefixes:`` section: what is announced, with which attributes, and dampening."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from anycast_announcer.config.document import short_repr
from anycast_announcer.config.syntax import community_problem, large_community_problem
from anycast_announcer.config.types import (
    AS_NUMBER_MAX,
    TWO_BYTE_MAX,
    Bool,
    Float,
    Int,
    IPNetworkText,
    Name,
    Port,
    Seconds,
    StrictModel,
    parse_prefix,
)

__all__ = ["DampeningConfig", "PrefixConfig", "WeightCommunity"]


class WeightCommunity(StrictModel):
    """A standard community ``asn:weight`` for fabrics that set bandwidth by leaf policy."""

    asn: Int = Field(ge=0, le=TWO_BYTE_MAX, description="the community's AS half")
    unit_mbps: Float = Field(
        default=1000.0, gt=0, description="weight = bandwidth_mbps / unit_mbps, rounded, 1..65535"
    )


class DampeningConfig(StrictModel):
    """Flap dampening: a prefix withdrawn too often is kept out until it has been calm.

    Each withdrawal caused by health adds ``penalty``; the penalty halves every
    ``half_life`` seconds. Above ``suppress`` the prefix is not re-announced (withdrawals
    are never delayed) until the penalty decays below ``reuse``, or ``max_suppress``
    seconds have passed. Defaults: three quick flaps suppress for about 30 s.
    """

    enabled: Bool = Field(default=True, description="false: re-announce as soon as healthy")
    half_life: Seconds = Field(default=15.0, description="seconds for the penalty to halve")
    penalty: Float = Field(default=1000.0, gt=0, description="added per withdrawal for health")
    suppress: Float = Field(default=2500.0, gt=0, description="above this, re-announcement waits")
    reuse: Float = Field(
        default=750.0, gt=0, description="... until the penalty decays below this (< suppress)"
    )
    max_suppress: Seconds = Field(default=120.0, description="seconds a prefix is held out at most")

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> DampeningConfig:
        if self.reuse >= self.suppress:
            raise ValueError(f"reuse ({self.reuse}) must be below suppress ({self.suppress})")
        return self


class PrefixConfig(StrictModel):
    """An anycast prefix and what must be healthy for it to be announced."""

    prefix: IPNetworkText = Field(
        description="the anycast prefix, normally a /32 or /128; inside allowed_prefixes"
    )
    services: list[Name] = Field(
        min_length=1, description="names of the services it depends on (see require)"
    )
    require: Literal["all", "any"] = Field(
        default="all", description="announce when all (or any) of the services are up"
    )
    bandwidth_mbps: Float | None = Field(
        default=None,
        gt=0,
        le=100_000_000,
        description="UCMP weight, sent as the BGP link-bandwidth extended community "
        "(docs/leaf.md); unset: no community is sent, and leaves that weigh by bandwidth "
        "treat the path as having none",
    )
    bandwidth_community: Literal["transitive", "non-transitive"] = Field(
        default="transitive",
        description="type 0x00 (as FRR sends it, so leaves pass sums upstream) or 0x40",
    )
    bandwidth_asn: Int | None = Field(
        default=None,
        ge=0,
        le=TWO_BYTE_MAX,
        description="AS in the community's 2-byte field; default local_as, or 23456 "
        "(AS_TRANS) when local_as needs 4 bytes",
    )
    weight_community: WeightCommunity | None = Field(
        default=None,
        description="also send the weight as a standard community; needs bandwidth_mbps",
    )
    communities: list[str] = Field(
        default_factory=list, description="standard communities to send, as 'asn:value'"
    )
    large_communities: list[str] = Field(
        default_factory=list, description="large communities to send, as 'asn:value:value'"
    )
    med: Int | None = Field(
        default=None, ge=0, le=AS_NUMBER_MAX, description="MULTI_EXIT_DISC; unset: not sent"
    )
    as_path_prepend: Int = Field(
        default=0, ge=0, le=16, description="prepend our AS this many extra times"
    )
    interface: str = Field(
        default="lo",
        min_length=1,
        max_length=15,
        description="the prefix's address must be on this interface to be announced",
    )
    ports: list[Port] | None = Field(
        default=None,
        description="service ports whose connections a drain waits for; default: the ports "
        "of the prefix's tcp and http(s) checks (a drain with none does not wait)",
    )
    dampening: DampeningConfig = Field(
        default=DampeningConfig(), description="flap dampening of this prefix"
    )
    manage_address: Bool = Field(
        default=False,
        description="add the address to the interface at start; remove it after the "
        "withdrawal was acknowledged",
    )

    @field_validator("communities")
    @classmethod
    def _valid_communities(cls, values: list[str]) -> list[str]:
        # Sent verbatim on ExaBGP's command line: see config.syntax for why full ASCII
        # matches matter ("65001:100\n" would split the command in two).
        for value in values:
            if (problem := community_problem(value)) is not None:
                raise ValueError(f"{short_repr(value)} {problem}")
        return values

    @field_validator("large_communities")
    @classmethod
    def _valid_large_communities(cls, values: list[str]) -> list[str]:
        for value in values:
            if (problem := large_community_problem(value)) is not None:
                raise ValueError(f"{short_repr(value)} {problem}")
        return values

    @field_validator("prefix", mode="before")
    @classmethod
    def _strict_prefix(cls, value: Any) -> Any:
        # pydantic parses with ip_network(strict=True); we only give clearer messages.
        if isinstance(value, str):
            parse_prefix(value)
        return value

    @model_validator(mode="after")
    def _weight_needs_bandwidth(self) -> PrefixConfig:
        if self.weight_community is not None and self.bandwidth_mbps is None:
            raise ValueError("weight_community needs bandwidth_mbps")
        return self
