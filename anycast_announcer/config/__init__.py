"""The configuration file: pydantic models, YAML loading and error reporting.

Everything a user can get wrong is caught here, before anything runs, and reported as a
list of ``field.path: message`` lines (``ConfigError``). The models are frozen: the running
sidecar never edits its configuration, it replaces it.

One module per part of the file, so a capability adds its fields beside its neighbours:
:mod:`.types` (strict scalars, addresses, the base model), :mod:`.bgp`, :mod:`.checks`
(services and their probes), :mod:`.prefixes`, :mod:`.drain`, :mod:`.http`,
:mod:`.runtime` (logging, ExaBGP, detection), :mod:`.rescue`, :mod:`.root` (the whole
file and its cross-section rules); :mod:`.document` reads YAML safely, :mod:`.syntax`
says what may be written into ExaBGP's text, :mod:`.errors` words the problems and
:mod:`.load` puts it together.
"""

from anycast_announcer.config.bgp import BgpConfig, PeerConfig
from anycast_announcer.config.checks import (
    CheckConfig,
    CommandCheck,
    HttpCheck,
    ServiceConfig,
    TcpCheck,
)
from anycast_announcer.config.drain import CommandHook, DrainConfig, DrainHook, HttpHook
from anycast_announcer.config.errors import PROBLEMS_SHOWN, SECRET_FIELDS, ConfigError
from anycast_announcer.config.http import HttpConfig, parse_host_port
from anycast_announcer.config.load import load_config, parse_config
from anycast_announcer.config.prefixes import DampeningConfig, PrefixConfig, WeightCommunity
from anycast_announcer.config.rescue import RescueConfig
from anycast_announcer.config.root import Config, config_warnings
from anycast_announcer.config.runtime import (
    WATCHDOG_MIN,
    DetectionConfig,
    ExabgpConfig,
    LoggingConfig,
)
from anycast_announcer.config.types import parse_prefix

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
    "DrainHook",
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
