"""The building blocks every section shares: strict scalars, addresses, the base model.

Numbers are strict everywhere: YAML reads yes/no/on/off/true/false as booleans, and a
lax int would turn ``local_as: yes`` into AS 1. Strict also refuses numbers written as
strings ("8080"), and floats refuse .nan and .inf.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    Strict,
)

from anycast_announcer.config.syntax import AS_NUMBER_MAX, TWO_BYTE_MAX

__all__ = [
    "AS_NUMBER_MAX",
    "TWO_BYTE_MAX",
    "AsNumber",
    "Bool",
    "Float",
    "IPAddress",
    "IPNetworkText",
    "IPv4",
    "IPv4NetworkText",
    "Int",
    "Name",
    "Port",
    "Seconds",
    "StrictModel",
    "WholeSeconds",
    "parse_prefix",
]

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, Strict()]

AsNumber = Annotated[Int, Field(ge=1, le=AS_NUMBER_MAX, description="AS number (1..4294967295)")]
Seconds = Annotated[Float, Field(gt=0, le=3600, description="a duration in seconds")]


def _whole_number(value: Any) -> Any:
    # Durations are written as numbers everywhere, so 9.0 must mean 9 where the value
    # ends up in a field that counts whole seconds (BGP hold time, nftables timeouts).
    if isinstance(value, float) and not isinstance(value, bool):
        if not value.is_integer():
            raise ValueError(f"must be a whole number of seconds (got {value!r})")
        return int(value)
    return value


WholeSeconds = Annotated[int, BeforeValidator(_whole_number), Strict()]
"""Seconds that end up in a field counting whole seconds: 9 and 9.0 are read, 9.5 refused."""
Port = Annotated[Int, Field(ge=1, le=65535)]
Name = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="letters, digits, '_', '.', '-'; at most 64 characters",
    ),
]


def _address_text(value: Any) -> Any:
    # pydantic would read 1 as 0.0.0.1 and true as 0.0.0.1: an address must be written out.
    if isinstance(value, bool | int | float):
        raise ValueError(f"must be an address written as text, like '10.0.0.1' (got {value!r})")
    return value


IPAddress = Annotated[IPvAnyAddress, BeforeValidator(_address_text)]
IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_address_text)]
IPNetworkText = Annotated[IPvAnyNetwork, BeforeValidator(_address_text)]
IPv4NetworkText = Annotated[ipaddress.IPv4Network, BeforeValidator(_address_text)]


class StrictModel(BaseModel):
    # Unknown keys are typos until proven otherwise; frozen because a running config is
    # replaced as a whole, never edited in place.
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_prefix(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A prefix as written by a user; ValueError says what is wrong with it, and how.

    Shared by the config file and the status API, so both word their errors alike.
    """
    if "/" not in text:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IPv4 or IPv6 prefix") from None
        raise ValueError(f"{text!r} has no prefix length (e.g. {text}/{address.max_prefixlen})")
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 prefix") from None
    try:
        # strict=False accepted it, so the only thing strict parsing can object to is
        # address bits beyond the prefix length.
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise ValueError(f"{text!r} has host bits set (did you mean {network}?)") from None
    return network
