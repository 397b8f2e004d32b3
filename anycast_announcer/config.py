"""The configuration file: pydantic models, YAML loading and error reporting.

Everything a user can get wrong is caught here, before anything runs, and reported as a
list of ``field.path: message`` lines (``ConfigError``). The models are frozen: the running
sidecar never edits its configuration, it replaces it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from anycast_announcer.configload import (
    DocumentError,
    format_location,
    kind,
    load_yaml_document,
    read_document,
    short_repr,
)
from anycast_announcer.exabgp.syntax import (
    community_problem,
    large_community_problem,
    md5_password_problem,
    quoted_word_problem,
)

__all__ = [
    "PROBLEMS_SHOWN",
    "SECRET_FIELDS",
    "WATCHDOG_MIN",
    "BgpConfig",
    "CheckConfig",
    "CommandCheck",
    "CommandHook",
    "Config",
    "ConfigError",
    "DampeningConfig",
    "DetectionConfig",
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
    "parse_host_port",
    "parse_prefix",
]

AS_NUMBER_MAX = 4_294_967_295
TWO_BYTE_AS_MAX = 65_535

# Numbers are strict everywhere: YAML reads yes/no/on/off/true/false as booleans, and a
# lax int would turn `local_as: yes` into AS 1. Strict also refuses numbers written as
# strings ("8080"), and floats refuse .nan and .inf.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, Strict()]

AsNumber = Annotated[Int, Field(ge=1, le=AS_NUMBER_MAX, description="AS number (1..4294967295)")]
Seconds = Annotated[Float, Field(gt=0, le=3600, description="a duration in seconds")]
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

SECRET_FIELDS = frozenset({"md5_password"})
"""Fields whose values never appear in an error message (nor in /status through one)."""


def _md5_password(value: str) -> str:
    problem = md5_password_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Md5Password = Annotated[str, Strict(), AfterValidator(_md5_password)]


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


class BgpConfig(_Model):
    """This server's BGP identity and its sessions."""

    local_as: AsNumber
    router_id: IPv4
    hold_time: Int = Field(
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
    expected_status: list[Annotated[Int, Field(ge=100, le=599)]] = Field(
        default=[200], min_length=1
    )
    body_regex: str | None = Field(default=None, description="Python regex searched in the body")
    verify_tls: Bool = True
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


class WeightCommunity(_Model):
    """A standard community ``asn:weight`` for fabrics that set bandwidth by leaf policy."""

    asn: Int = Field(ge=0, le=TWO_BYTE_AS_MAX)
    unit_mbps: Float = Field(
        default=1000.0, gt=0, description="weight = bandwidth_mbps / unit_mbps, rounded, 1..65535"
    )


class DampeningConfig(_Model):
    """Flap dampening: a prefix withdrawn too often is kept out until it has been calm.

    Each withdrawal caused by health adds ``penalty``; the penalty halves every
    ``half_life`` seconds. Above ``suppress`` the prefix is not re-announced (withdrawals
    are never delayed) until the penalty decays below ``reuse``, or ``max_suppress``
    seconds have passed. Defaults: three quick flaps suppress for about 30 s.
    """

    enabled: Bool = True
    half_life: Seconds = 15.0
    penalty: Float = Field(default=1000.0, gt=0)
    suppress: Float = Field(default=2500.0, gt=0)
    reuse: Float = Field(default=750.0, gt=0)
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
    connection_threshold: Int = Field(default=0, ge=0)
    connection_timeout: Seconds = 30.0
    graceful_shutdown_hold: Float = Field(default=5.0, ge=0, le=3600)
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
    bandwidth_mbps: Float | None = Field(
        default=None,
        gt=0,
        le=100_000_000,
        description="UCMP weight, sent as the BGP link-bandwidth extended community",
    )
    bandwidth_community: Literal["transitive", "non-transitive"] = Field(
        default="transitive",
        description="type 0x00 (as FRR sends it, so leaves pass sums upstream) or 0x40",
    )
    bandwidth_asn: Int | None = Field(
        default=None,
        ge=0,
        le=TWO_BYTE_AS_MAX,
        description="AS in the community's 2-byte field; default local_as, or 23456 "
        "(AS_TRANS) when local_as needs 4 bytes",
    )
    weight_community: WeightCommunity | None = None
    communities: list[str] = Field(default_factory=list)
    large_communities: list[str] = Field(default_factory=list)
    med: Int | None = Field(default=None, ge=0, le=AS_NUMBER_MAX)
    as_path_prepend: Int = Field(default=0, ge=0, le=16)
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
    manage_address: Bool = Field(
        default=False,
        description="add the address to the interface at start; remove it after the "
        "withdrawal was acknowledged",
    )

    @field_validator("communities")
    @classmethod
    def _valid_communities(cls, values: list[str]) -> list[str]:
        # Sent verbatim on ExaBGP's command line: see exabgp.syntax for why full ASCII
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


class HttpConfig(_Model):
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


class LoggingConfig(_Model):
    """Log output."""

    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )
    level: Literal["debug", "info", "warning", "error"] = "info"


WATCHDOG_MIN = 3.0
"""The shortest watchdog: heartbeats every second, so a 2 s stall of the loop is survived."""
RUN_DIR_MAX = 107 - len("/api.sock")
"""sun_path holds 108 bytes (one of them the NUL) and the API socket lives in run_dir."""


def _run_dir(value: str) -> str:
    # Written quoted into ExaBGP's `run` line (as the socket's directory).
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    if len(value.encode()) > RUN_DIR_MAX:
        raise ValueError(f"must be at most {RUN_DIR_MAX} bytes (the API socket lives in it)")
    if (problem := quoted_word_problem(value)) is not None:
        raise ValueError(problem)
    return value


RunDir = Annotated[str, Strict(), AfterValidator(_run_dir)]


class ExabgpConfig(_Model):
    """How the ExaBGP child process is run."""

    executable: str | None = Field(
        default=None, description="path of exabgp; default: the one installed beside us"
    )
    run_dir: RunDir | None = Field(
        default=None,
        description="where rendered config and API socket live (forced to mode 0700); "
        "default: a temp dir",
    )
    restart_backoff_initial: Seconds = 0.5
    restart_backoff_max: Seconds = 30.0
    ack_timeout: Seconds = 5.0
    watchdog: Float = Field(
        default=5.0,
        description="seconds without a heartbeat from the sidecar after which ExaBGP's "
        f"API relay exits, so ExaBGP stops and the leaves drop our routes; 0 turns it "
        f"off, otherwise at least {WATCHDOG_MIN:g}",
    )

    @field_validator("watchdog")
    @classmethod
    def _watchdog_range(cls, value: float) -> float:
        # The heartbeat comes every watchdog/3 s; below the minimum, a garbage collection
        # or a reload of a large config on the event loop could trip it.
        if value != 0 and not WATCHDOG_MIN <= value <= 3600:
            raise ValueError(f"must be 0 (off) or between {WATCHDOG_MIN:g} and 3600 seconds")
        return value


class DetectionConfig(_Model):
    """The event sources that find failures without polling (see the services' switches)."""

    address_resync_interval: Seconds = Field(
        default=30.0,
        description="a full dump of local addresses as a backstop to the rtnetlink events",
    )
    systemd_bus: str = Field(
        default="/run/dbus/system_bus_socket",
        min_length=2,
        max_length=107,
        pattern=r"^/",
        description="the D-Bus socket systemd listens on, for services with systemd_unit",
    )


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
    vni: Int = Field(
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
    probation: Int = Field(
        default=3,
        ge=1,
        le=60,
        description="seconds a flow is replicated to every member before, nobody having "
        "claimed it, it is handed to the local stack (which resets it)",
    )
    learn_timeout: Int = Field(
        default=5,
        ge=2,
        le=600,
        description="seconds a learnt owner is remembered after its last feedback",
    )
    feedback_interval: Float = Field(
        default=1.0,
        ge=0.1,
        le=60,
        description="an owner confirms a rescued flow to its forwarder at most once per "
        "this many seconds (after a burst of 3)",
    )
    orphan_window: Int = Field(
        default=10,
        ge=1,
        le=3600,
        description="seconds after its probation during which the next packet of an "
        "unclaimed flow goes to the local stack (which resets it); later packets, or any "
        "after that one, start a new probation",
    )
    icmp_rate: Int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="ICMP 'fragmentation needed' / 'packet too big' relayed per second",
    )
    flow_table_size: Int = Field(
        default=65536, ge=1024, le=16_777_216, description="entries per flow set"
    )
    clamp_mss: Bool = Field(
        default=True,
        description="advertise an MSS that lets clients' packets fit the overlay",
    )
    underlay_mtu: Int | None = Field(
        default=None,
        ge=1280,
        le=65535,
        description="MTU of the path between members; default: the smallest MTU of the "
        "interfaces that route to them",
    )
    takeover_warmup: Float = Field(
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
    detection: DetectionConfig = DetectionConfig()
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


class ConfigError(Exception):
    """The user's configuration is wrong; ``problems`` lists ``path: message`` lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        """One line per problem, each prefixed with the file name."""
        return "\n".join(f"{self.source}: {problem}" for problem in self.problems)


_UNION_TAGS: dict[str, tuple[str, ...]] = {
    "check": ("tcp", "http", "https", "command"),
    "hook": ("command", "http"),
}
"""Tagged-union fields and their tags (pydantic puts the tag into error locations)."""

_NUMBER_TYPES = frozenset({"int_type", "float_type", "int_parsing", "float_parsing"})


def _user_location(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Tagged unions add the tag ("tcp", "http") to the location right after the union
    # field; users never wrote it. Only there: "http" is also a top-level section.
    return tuple(
        part
        for index, part in enumerate(loc)
        if not (
            index > 0
            and isinstance(loc[index - 1], str)
            and part in _UNION_TAGS.get(str(loc[index - 1]), ())
        )
    )


def _error_message(item: Any, location: tuple[int | str, ...]) -> tuple[str, str]:
    """(path, message) for one pydantic error, never showing a secret or a huge value."""
    path = format_location(location)
    message = str(item["msg"]).removeprefix("Value error, ")
    secret = any(part in SECRET_FIELDS for part in location)
    value = item.get("input")
    if item["type"] == "extra_forbidden":
        message = "unknown key (not allowed here)"
    elif item["type"] == "missing":
        message = "required key is missing"
    elif item["type"] in {"model_type", "model_attributes_type", "dict_type"}:
        # pydantic would say "a valid dictionary or instance of BgpConfig".
        message = f"must be a mapping (got {kind(value)})"
    elif item["type"] in {"union_tag_not_found", "union_tag_invalid"}:
        context = item.get("ctx", {})
        path = format_location((*location, str(context.get("discriminator", "type")).strip("'")))
        union = str(location[-1]) if location else "check"
        expected = ", ".join(repr(tag) for tag in _UNION_TAGS.get(union, ()))
        if item["type"] == "union_tag_not_found":
            message = f"required key is missing (one of {expected})"
        else:
            message = f"{short_repr(context.get('tag'))} is not one of {expected}"
    elif item["type"] in _NUMBER_TYPES and isinstance(value, bool):
        message = (
            f"must be a number, not a boolean (got {str(value).lower()}; "
            "YAML reads yes/no/on/off/true/false as booleans)"
        )
    elif "input" in item and item["type"] not in {"value_error", "assertion_error"} and not secret:
        message += f" (got {short_repr(value)})"
    return path, message


PROBLEMS_SHOWN = 50
"""More problems than this are summed up in one line: a list of 90,000 wrong entries
would otherwise print 90,000 lines (and keep a reload busy formatting them)."""


def _validation_problems(error: ValidationError) -> list[str]:
    problems: list[str] = []
    items = error.errors(include_url=False, include_context=True, include_input=True)
    for item in items[:PROBLEMS_SHOWN]:
        path, message = _error_message(item, _user_location(tuple(item["loc"])))
        for line in message.splitlines():
            # Cross-section rules already carry their own path.
            problems.append(line if not path else f"{path}: {line}")
    if len(items) > PROBLEMS_SHOWN:
        problems.append(f"... and {len(items) - PROBLEMS_SHOWN} more problems")
    return problems


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse and validate YAML text; raises ConfigError listing every problem.

    Nothing else escapes: a document that cannot be loaded at all (bad YAML, a failing
    tag, an alias bomb, deep nesting, even MemoryError) is a ConfigError too.
    """
    try:
        data = load_yaml_document(text)
    except DocumentError as exc:
        raise ConfigError(source, [str(exc)]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"the top level must be a mapping, not {kind(data)}"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _validation_problems(exc)) from None
    except (RecursionError, MemoryError) as exc:  # bounded by load_yaml_document; belt
        raise ConfigError(source, [f"cannot validate: {type(exc).__name__}"]) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raises ConfigError for every user mistake."""
    source = str(path)
    try:
        text = read_document(path)
    except DocumentError as exc:
        raise ConfigError(source, [str(exc)]) from None
    return parse_config(text, source)
