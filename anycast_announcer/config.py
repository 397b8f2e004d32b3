"""The configuration file: pydantic models, YAML loading and error reporting.

Everything a user can get wrong is caught here, before anything runs, and reported as a
list of ``field.path: message`` lines (``ConfigError``). The models are frozen: the running
sidecar never edits its configuration, it replaces it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "BgpConfig",
    "CheckConfig",
    "CommandCheck",
    "CommandHook",
    "Config",
    "ConfigError",
    "DampeningConfig",
    "DrainConfig",
    "ExabgpConfig",
    "HttpCheck",
    "HttpConfig",
    "HttpHook",
    "LoggingConfig",
    "PeerConfig",
    "PrefixConfig",
    "RescueConfig",
    "ServiceConfig",
    "TcpCheck",
    "WeightCommunity",
    "config_warnings",
    "load_config",
    "parse_config",
    "parse_prefix",
]

AS_NUMBER_MAX = 4_294_967_295
TWO_BYTE_AS_MAX = 65_535

AsNumber = Annotated[int, Field(ge=1, le=AS_NUMBER_MAX, description="AS number (1..4294967295)")]
Seconds = Annotated[float, Field(gt=0, le=3600, description="a duration in seconds")]
Port = Annotated[int, Field(ge=1, le=65535)]
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

_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")


class _Model(BaseModel):
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


class PeerConfig(_Model):
    """One BGP session to a leaf switch."""

    address: IPAddress
    peer_as: AsNumber
    local_address: IPAddress | None = Field(
        default=None, description="source address of the session; default: chosen by the kernel"
    )
    md5_password: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        # It is written into ExaBGP's config file: no quotes, blanks or separators.
        pattern=r"""^[^\s"';{}]+$""",
        description="TCP-MD5 (RFC 2385) password; no blanks, quotes, ';' or braces",
    )

    @model_validator(mode="after")
    def _same_family(self) -> PeerConfig:
        if self.local_address is not None and self.local_address.version != self.address.version:
            raise ValueError(
                f"local_address {self.local_address} is IPv{self.local_address.version} "
                f"but address {self.address} is IPv{self.address.version}"
            )
        return self


class BgpConfig(_Model):
    """This server's BGP identity and its sessions."""

    local_as: AsNumber
    router_id: IPv4
    hold_time: int = Field(
        default=9, description="seconds; 0 disables keepalives, otherwise at least 3"
    )
    peers: list[PeerConfig] = Field(min_length=1)
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


class TcpCheck(_Model):
    """Healthy when a TCP connection to host:port succeeds."""

    type: Literal["tcp"]
    host: str = Field(min_length=1, description="address or name to connect to")
    port: Port


class HttpCheck(_Model):
    """Healthy when a GET returns one of the expected statuses (and the body matches)."""

    type: Literal["http", "https"]
    url: str = Field(pattern=r"^https?://[^/\s]+", description="http:// or https:// URL")
    expected_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default=[200], min_length=1
    )
    body_regex: str | None = Field(default=None, description="Python regex searched in the body")
    verify_tls: bool = True
    host_header: str | None = Field(default=None, min_length=1)

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


class CommandCheck(_Model):
    """Healthy when the command exits 0 within the timeout."""

    type: Literal["command"]
    argv: list[str] = Field(min_length=1, description="program and arguments; no shell")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict, description="added to the environment")


CheckConfig = Annotated[TcpCheck | HttpCheck | CommandCheck, Field(discriminator="type")]


class ServiceConfig(_Model):
    """A local service and how to probe it."""

    name: Name
    check: CheckConfig
    interval: Seconds = 1.0
    timeout: Seconds = 0.5
    rise: int = Field(default=2, ge=1, le=100, description="consecutive successes to go up")
    fall: int = Field(default=2, ge=1, le=100, description="consecutive failures to go down")

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ServiceConfig:
        # A probe that may outlive its interval would make the schedule drift.
        if self.timeout > self.interval:
            raise ValueError(
                f"timeout ({self.timeout}s) must not exceed interval ({self.interval}s)"
            )
        return self


class WeightCommunity(_Model):
    """A standard community ``asn:weight`` for fabrics that set bandwidth by leaf policy."""

    asn: int = Field(ge=0, le=TWO_BYTE_AS_MAX)
    unit_mbps: float = Field(
        default=1000.0, gt=0, description="weight = bandwidth_mbps / unit_mbps, rounded, 1..65535"
    )


class DampeningConfig(_Model):
    """Flap dampening: a prefix withdrawn too often is kept out until it has been calm.

    Each withdrawal caused by health adds ``penalty``; the penalty halves every
    ``half_life`` seconds. Above ``suppress`` the prefix is not re-announced (withdrawals
    are never delayed) until the penalty decays below ``reuse``, or ``max_suppress``
    seconds have passed. Defaults: three quick flaps suppress for about 30 s.
    """

    enabled: bool = True
    half_life: Seconds = 15.0
    penalty: float = Field(default=1000.0, gt=0)
    suppress: float = Field(default=2500.0, gt=0)
    reuse: float = Field(default=750.0, gt=0)
    max_suppress: Seconds = 120.0

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> DampeningConfig:
        if self.reuse >= self.suppress:
            raise ValueError(f"reuse ({self.reuse}) must be below suppress ({self.suppress})")
        return self


class CommandHook(_Model):
    """Run a command (no shell); exit 0 means the application accepted the drain."""

    type: Literal["command"]
    argv: list[str] = Field(min_length=1)


class HttpHook(_Model):
    """Call a URL on the local application (e.g. its admin endpoint)."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://[^/\s]+", description="http:// or https:// URL")
    method: Literal["GET", "POST", "PUT"] = "POST"


DrainHook = Annotated[CommandHook | HttpHook, Field(discriminator="type")]


class DrainConfig(_Model):
    """How a drain takes a server out of service without breaking its sessions.

    Order: run ``hook`` (the prefix stays announced), wait until established connections
    to the prefix's ports fall to ``connection_threshold`` (or ``connection_timeout``),
    re-announce with GRACEFUL_SHUTDOWN 65535:0 (RFC 8326) for ``graceful_shutdown_hold``
    seconds, then withdraw.
    """

    hook: DrainHook | None = None
    hook_timeout: Seconds = 10.0
    connection_threshold: int = Field(default=0, ge=0)
    connection_timeout: Seconds = 30.0
    graceful_shutdown_hold: float = Field(default=5.0, ge=0, le=3600)
    state_file: str | None = Field(
        default=None, description="where a drain is persisted so it survives restarts"
    )
    drain_file: str | None = Field(
        default=None, description="while this file exists, every prefix is drained"
    )


class PrefixConfig(_Model):
    """An anycast prefix and what must be healthy for it to be announced."""

    prefix: IPNetworkText
    services: list[Name] = Field(min_length=1)
    require: Literal["all", "any"] = Field(
        default="all", description="announce when all (or any) of the services are up"
    )
    bandwidth_mbps: float | None = Field(
        default=None,
        gt=0,
        le=100_000_000,
        description="UCMP weight, sent as the BGP link-bandwidth extended community",
    )
    bandwidth_community: Literal["transitive", "non-transitive"] = Field(
        default="transitive",
        description="type 0x00 (as FRR sends it, so leaves pass sums upstream) or 0x40",
    )
    bandwidth_asn: int | None = Field(
        default=None,
        ge=0,
        le=TWO_BYTE_AS_MAX,
        description="AS in the community's 2-byte field; default local_as, or 23456 "
        "(AS_TRANS) when local_as needs 4 bytes",
    )
    weight_community: WeightCommunity | None = None
    communities: list[str] = Field(default_factory=list)
    large_communities: list[str] = Field(default_factory=list)
    med: int | None = Field(default=None, ge=0, le=AS_NUMBER_MAX)
    as_path_prepend: int = Field(default=0, ge=0, le=16)
    interface: str = Field(
        default="lo",
        min_length=1,
        max_length=15,
        description="the prefix's address must be on this interface to be announced",
    )
    ports: list[Port] | None = Field(
        default=None,
        description="service ports whose connections a drain waits for; default: the ports "
        "of the prefix's tcp checks",
    )
    dampening: DampeningConfig = DampeningConfig()
    manage_address: bool = Field(
        default=False,
        description="add the address to the interface at start; remove it after the "
        "withdrawal was acknowledged",
    )

    @field_validator("communities")
    @classmethod
    def _valid_communities(cls, values: list[str]) -> list[str]:
        for value in values:
            match = _COMMUNITY.match(value)
            if not match or any(int(part) > TWO_BYTE_AS_MAX for part in match.groups()):
                raise ValueError(f"{value!r} is not a community 'A:B' with A, B in 0..65535")
        return values

    @field_validator("large_communities")
    @classmethod
    def _valid_large_communities(cls, values: list[str]) -> list[str]:
        for value in values:
            match = _LARGE_COMMUNITY.match(value)
            if not match or any(int(part) > AS_NUMBER_MAX for part in match.groups()):
                raise ValueError(
                    f"{value!r} is not a large community 'A:B:C' with each part in 0..4294967295"
                )
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


class HttpConfig(_Model):
    """The status API."""

    listen: str = Field(
        default="127.0.0.1:9179", description="host:port ('[v6]:port' for IPv6), or '' to disable"
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port")
        return value

    token_file: str | None = Field(
        default=None,
        min_length=1,
        description="file holding the bearer token for drain, undrain and reload "
        "(mode 0600); without it those endpoints answer 403",
    )
    unix_socket: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^/",
        # sun_path holds 108 bytes, one of them the terminating NUL.
        max_length=107,
        description="also serve the API on this unix socket (absolute path, mode 0600)",
    )
    max_body_bytes: int = Field(
        default=65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="larger request bodies are refused with 413",
    )


class LoggingConfig(_Model):
    """Log output."""

    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )
    level: Literal["debug", "info", "warning", "error"] = "info"


class ExabgpConfig(_Model):
    """How the ExaBGP child process is run."""

    executable: str | None = Field(
        default=None, description="path of exabgp; default: the one installed beside us"
    )
    run_dir: str | None = Field(
        default=None, description="where rendered config and API socket live; default: a temp dir"
    )
    restart_backoff_initial: Seconds = 0.5
    restart_backoff_max: Seconds = 30.0
    ack_timeout: Seconds = 5.0


# -- flow rescue (anycast_announcer/rescue/ turns this section into the kernel data path) --

OverlayDevice = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$",
        description="interface name: letters, digits, '_', '.', '-'; at most 15 characters",
    ),
]
IPv4NetworkText = Annotated[ipaddress.IPv4Network, BeforeValidator(_address_text)]


class RescueConfig(_Model):
    """Flow rescue: hand TCP packets of connections held by another server of the group.

    Packets the fabric delivers for an anycast address whose connection this server does
    not hold go over a VXLAN overlay to the other members (then to the one that answered),
    instead of being answered with a reset. See docs/rescue.md.
    """

    members: list[IPAddress] = Field(
        min_length=2,
        description="underlay addresses of every server of the anycast group, this one "
        "included; the same list on every server",
    )
    local_address: IPAddress | None = Field(
        default=None,
        description="this server's entry in members; default: the member configured on a "
        "local interface",
    )
    vni: int = Field(
        default=4242,
        ge=1,
        le=16_777_214,
        description="VXLAN network identifier of the rescue overlay; feedback uses vni + 1",
    )
    udp_port: Port = Field(default=4800, description="VXLAN UDP port (both overlays)")
    device: OverlayDevice = "anycast-rsc"
    feedback_device: OverlayDevice = "anycast-fb"
    overlay_ipv4: IPv4NetworkText = Field(
        default=ipaddress.IPv4Network("169.254.90.0/24"),
        description="addresses of the overlay devices (split in two halves: rescue, "
        "feedback); local to the group, never routed",
    )
    probation: int = Field(
        default=3,
        ge=1,
        le=60,
        description="seconds a flow is replicated to every member before, nobody having "
        "claimed it, it is handed to the local stack (which resets it)",
    )
    learn_timeout: int = Field(
        default=5,
        ge=2,
        le=600,
        description="seconds a learnt owner is remembered after its last feedback",
    )
    feedback_interval: float = Field(
        default=1.0,
        ge=0.1,
        le=60,
        description="an owner confirms a rescued flow to its forwarder at most once per "
        "this many seconds (after a burst of 3)",
    )
    orphan_window: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="seconds after its probation during which the next packet of an "
        "unclaimed flow goes to the local stack (which resets it); later packets, or any "
        "after that one, start a new probation",
    )
    icmp_rate: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="ICMP 'fragmentation needed' / 'packet too big' relayed per second",
    )
    flow_table_size: int = Field(
        default=65536, ge=1024, le=16_777_216, description="entries per flow set"
    )
    clamp_mss: bool = Field(
        default=True,
        description="advertise an MSS that lets clients' packets fit the overlay",
    )
    underlay_mtu: int | None = Field(
        default=None,
        ge=1280,
        le=65535,
        description="MTU of the path between members; default: the smallest MTU of the "
        "interfaces that route to them",
    )
    takeover_warmup: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="seconds conntrack watches traffic before a first install rescues",
    )


def _rescue_problems(rescue: RescueConfig) -> Iterator[str]:
    """Rules across the rescue section's fields; each yields ``rescue.path: message``."""
    from anycast_announcer.rescue.addressing import member_mac  # pure, no cycle at runtime

    seen: dict[str, int] = {}
    macs: dict[str, int] = {}
    first = rescue.members[0]
    for index, member in enumerate(rescue.members):
        where = f"rescue.members[{index}]"
        if member.is_unspecified or member.is_multicast or member.is_loopback:
            yield f"{where}: {member} is not a usable underlay address"
        if member.version != first.version:
            yield (
                f"{where}: {member} is IPv{member.version} but members[0] is "
                f"IPv{first.version}; the underlay must be one address family"
            )
        if str(member) in seen:
            yield f"{where}: duplicate member {member} (also members[{seen[str(member)]}])"
            continue
        seen[str(member)] = index
        mac = member_mac(member, feedback=False)
        if mac in macs:
            yield f"{where}: its overlay MAC {mac} collides with members[{macs[mac]}]"
        macs[mac] = index
    if rescue.local_address is not None and str(rescue.local_address) not in seen:
        yield f"rescue.local_address: {rescue.local_address} is not one of rescue.members"
    if rescue.device == rescue.feedback_device:
        yield "rescue.feedback_device: must differ from rescue.device"
    half = rescue.overlay_ipv4.num_addresses // 2
    if half - 2 < len(rescue.members):
        yield (
            f"rescue.overlay_ipv4: {rescue.overlay_ipv4} holds {max(half - 2, 0)} members "
            f"per half, {len(rescue.members)} are configured"
        )
    if rescue.probation <= rescue.feedback_interval:
        yield "rescue.probation: must be longer than feedback_interval"
    if rescue.learn_timeout < 2 * rescue.feedback_interval:
        yield "rescue.learn_timeout: must be at least twice feedback_interval"


class Config(_Model):
    """The whole configuration file."""

    bgp: BgpConfig
    services: list[ServiceConfig] = Field(min_length=1)
    prefixes: list[PrefixConfig] = Field(min_length=1)
    allowed_prefixes: list[IPNetworkText] | None = Field(
        default=None, description="refuse to announce anything not inside one of these"
    )
    drain: DrainConfig = DrainConfig()
    http: HttpConfig = HttpConfig()
    logging: LoggingConfig = LoggingConfig()
    exabgp: ExabgpConfig = ExabgpConfig()
    rescue: RescueConfig | None = Field(
        default=None, description="flow rescue among the servers of the anycast group"
    )

    @model_validator(mode="after")
    def _rescue_references(self) -> Config:
        problems = list(_rescue_problems(self.rescue)) if self.rescue is not None else []
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
    peer_addresses: set[str] = set()
    for index, peer in enumerate(config.bgp.peers):
        if str(peer.address) in peer_addresses:
            yield f"bgp.peers[{index}].address: duplicate peer address {peer.address}"
        peer_addresses.add(str(peer.address))

    names: set[str] = set()
    for index, service in enumerate(config.services):
        if service.name in names:
            yield f"services[{index}].name: duplicate service name {service.name!r}"
        names.add(service.name)

    peer_families = {peer.address.version for peer in config.bgp.peers}
    seen_prefixes: set[str] = set()
    for index, prefix in enumerate(config.prefixes):
        where = f"prefixes[{index}]"
        if str(prefix.prefix) in seen_prefixes:
            yield f"{where}.prefix: duplicate prefix {prefix.prefix}"
        seen_prefixes.add(str(prefix.prefix))
        for position, name in enumerate(prefix.services):
            if name not in names:
                yield f"{where}.services[{position}]: unknown service {name!r}"
        if len(set(prefix.services)) != len(prefix.services):
            yield f"{where}.services: a service is listed twice"
        if prefix.prefix.version not in peer_families:
            yield (
                f"{where}.prefix: {prefix.prefix} is IPv{prefix.prefix.version} but no "
                f"bgp.peers entry is, so it could never be announced"
            )
        if config.allowed_prefixes is not None and not any(
            prefix.prefix.version == allowed.version and prefix.prefix.subnet_of(allowed)  # type: ignore[arg-type]  # same version checked
            for allowed in config.allowed_prefixes
        ):
            yield f"{where}.prefix: {prefix.prefix} is outside allowed_prefixes"
    if config.exabgp.restart_backoff_initial > config.exabgp.restart_backoff_max:
        yield "exabgp.restart_backoff_initial: must not exceed restart_backoff_max"


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


class ConfigError(Exception):
    """The user's configuration is wrong; ``problems`` lists ``path: message`` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        """One line per problem, each prefixed with the file name."""
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _format_location(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            # A mistyped key may hold anything, newlines included; quote it on one line.
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else part
    return text


_UNION_TAGS: dict[str, tuple[str, ...]] = {
    "check": ("tcp", "http", "https", "command"),
    "hook": ("command", "http"),
}
"""Tagged-union fields and their tags (pydantic puts the tag into error locations)."""


def _kind(value: Any) -> str:
    """What a YAML user would call a value's type."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "a long string" if isinstance(value, str) else type(value).__name__


def _validation_problems(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        # Tagged unions add the tag ("tcp", "http") to the location right after the union
        # field; users never wrote it. Only there: "http" is also a top-level section.
        location = tuple(
            part
            for index, part in enumerate(item["loc"])
            if not (
                index > 0
                and isinstance(item["loc"][index - 1], str)
                and part in _UNION_TAGS.get(str(item["loc"][index - 1]), ())
            )
        )
        path = _format_location(location)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (not allowed here)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] in {"model_type", "model_attributes_type", "dict_type"}:
            # pydantic would say "a valid dictionary or instance of BgpConfig".
            message = f"must be a mapping (got {_kind(item.get('input'))})"
        elif item["type"] in {"union_tag_not_found", "union_tag_invalid"}:
            context = item.get("ctx", {})
            path = _format_location((*location, context.get("discriminator", "type").strip("'")))
            union = str(location[-1]) if location else "check"
            expected = ", ".join(repr(tag) for tag in _UNION_TAGS.get(union, ()))
            if item["type"] == "union_tag_not_found":
                message = f"required key is missing (one of {expected})"
            else:
                message = f"{context.get('tag')!r} is not one of {expected}"
        elif "input" in item and item["type"] not in {"value_error", "assertion_error"}:
            shown = repr(item["input"])
            if len(shown) <= 60:
                message += f" (got {shown})"
            else:
                message += f" (got {_kind(item['input'])})"
        for line in message.splitlines():
            # Cross-section rules already carry their own path.
            problems.append(line if not path else f"{path}: {line}")
    return problems


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate YAML text; raises ConfigError listing every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506  # SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(source, [f"invalid YAML: {where}{exc.problem}"]) from None
    except yaml.reader.ReaderError as exc:
        # Its str() spans two lines; the character and offset are what the user needs.
        raise ConfigError(
            source,
            [
                f"invalid YAML: character #x{exc.character:04x} at offset {exc.position} "
                "is not allowed"
            ],
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"invalid YAML: {exc}"]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a mapping, not {type(data).__name__}"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _validation_problems(exc)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError for every user mistake."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(source, ["is a directory, not a file"]) from None
    except PermissionError:
        raise ConfigError(source, ["permission denied"]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, source)
