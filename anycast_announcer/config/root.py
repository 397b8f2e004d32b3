"""The whole file: its sections, and the rules that span them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import Field, model_validator

from anycast_announcer.config.bgp import BgpConfig
from anycast_announcer.config.checks import ServiceConfig
from anycast_announcer.config.drain import DrainConfig
from anycast_announcer.config.http import HttpConfig
from anycast_announcer.config.prefixes import PrefixConfig
from anycast_announcer.config.rescue import RescueConfig, rescue_problems
from anycast_announcer.config.runtime import DetectionConfig, ExabgpConfig, LoggingConfig
from anycast_announcer.config.types import IPNetworkText, StrictModel

__all__ = ["FRR_LINK_BANDWIDTH_MAX_MBPS", "Config", "config_warnings"]


class Config(StrictModel):
    """The whole configuration file."""

    bgp: BgpConfig = Field(description="this server's BGP identity and sessions")
    services: list[ServiceConfig] = Field(
        min_length=1, description="the local services and their probes"
    )
    prefixes: list[PrefixConfig] = Field(
        min_length=1, description="the anycast prefixes and what they depend on"
    )
    allowed_prefixes: list[IPNetworkText] | None = Field(
        default=None,
        description="refuse to announce anything not inside one of these (a guard against "
        "config mistakes); unset: no such guard",
    )
    drain: DrainConfig = Field(default=DrainConfig(), description="how drains proceed")
    http: HttpConfig = Field(default=HttpConfig(), description="the status API")
    logging: LoggingConfig = Field(default=LoggingConfig(), description="log output")
    exabgp: ExabgpConfig = Field(default=ExabgpConfig(), description="how the ExaBGP child is run")
    detection: DetectionConfig = Field(
        default=DetectionConfig(), description="event sources that find failures at once"
    )
    rescue: RescueConfig | None = Field(
        default=None, description="flow rescue among the servers of the anycast group"
    )

    @model_validator(mode="after")
    def _rescue_references(self) -> Config:
        problems = list(rescue_problems(self.rescue)) if self.rescue is not None else []
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        problems = list(_cross_reference_problems(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def service(self, name: str) -> ServiceConfig:
        """The service called ``name`` (validation guarantees it exists)."""
        return next(service for service in self.services if service.name == name)


def _cross_reference_problems(config: Config) -> Iterator[str]:
    """Rules that span sections; each yields ``path: message``."""
    yield from _duplicates(
        (str(peer.address) for peer in config.bgp.peers),
        "bgp.peers[{index}].address: duplicate peer address {value}",
    )
    yield from _duplicates(
        (service.name for service in config.services),
        "services[{index}].name: duplicate service name {value!r}",
    )
    yield from _duplicates(
        (str(prefix.prefix) for prefix in config.prefixes),
        "prefixes[{index}].prefix: duplicate prefix {value}",
    )
    names = {service.name for service in config.services}
    for index, prefix in enumerate(config.prefixes):
        yield from _prefix_problems(config, f"prefixes[{index}]", prefix, names)
    if config.exabgp.restart_backoff_initial > config.exabgp.restart_backoff_max:
        yield "exabgp.restart_backoff_initial: must not exceed restart_backoff_max"


def _duplicates(values: Iterable[str], message: str) -> Iterator[str]:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            yield message.format(index=index, value=value)
        seen.add(value)


def _prefix_problems(
    config: Config, where: str, prefix: PrefixConfig, services: set[str]
) -> Iterator[str]:
    for position, name in enumerate(prefix.services):
        if name not in services:
            yield f"{where}.services[{position}]: unknown service {name!r}"
    if len(set(prefix.services)) != len(prefix.services):
        yield f"{where}.services: a service is listed twice"
    if prefix.prefix.version not in {peer.address.version for peer in config.bgp.peers}:
        yield (
            f"{where}.prefix: {prefix.prefix} is IPv{prefix.prefix.version} but no "
            f"bgp.peers entry is, so it could never be announced"
        )
    if config.allowed_prefixes is not None and not any(
        prefix.prefix.version == allowed.version and prefix.prefix.subnet_of(allowed)  # type: ignore[arg-type]  # same version checked
        for allowed in config.allowed_prefixes
    ):
        yield f"{where}.prefix: {prefix.prefix} is outside allowed_prefixes"


FRR_LINK_BANDWIDTH_MAX_MBPS = (2**32 - 1) * 8 / 1e6
"""FRR 8.4 holds link bandwidth as a 32-bit count of bytes/s: about 34359 Mbit/s."""


def config_warnings(config: Config) -> list[str]:
    """Valid but probably unintended settings, as ``path: message`` lines."""
    warnings = []
    for index, prefix in enumerate(config.prefixes):
        if prefix.bandwidth_mbps is not None and (
            prefix.bandwidth_mbps > FRR_LINK_BANDWIDTH_MAX_MBPS
        ):
            warnings.append(
                f"prefixes[{index}].bandwidth_mbps: {prefix.bandwidth_mbps:g} exceeds what "
                f"FRR 8.4 can hold ({FRR_LINK_BANDWIDTH_MAX_MBPS:.0f} Mbit/s, a 32-bit count "
                "of bytes/s; larger values wrap). Weights are relative: scale every server's "
                "bandwidth by the same factor, keeping leaf sums below that too."
            )
    return warnings
