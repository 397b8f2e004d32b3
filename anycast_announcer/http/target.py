"""Where the CLI finds a sidecar's API, and which token it sends.

An operator who moved ``http.listen`` to the management address (so Prometheus can scrape
it) should not have to repeat that address on every ``status`` or ``drain``: given the
config file (``-c``), the CLI reaches the sidecar where the config says it listens, and
reads the token file the config names. What is given on the command line wins over the
config, and the config over the environment, because the command line is the most
explicit of the three.

- ``--url`` or ``--socket``: used as given.
- else ``-c CONFIG``: ``http.listen`` (a wildcard listen is reached over loopback, which
  the Host check always accepts), or ``http.unix_socket`` when TCP is off (``listen: ''``).
- else ``http://127.0.0.1:9179``.

The token: ``--token-file``, else the config's ``http.token_file``, else
``$ANYCAST_ANNOUNCER_TOKEN_FILE``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from anycast_announcer.config import HttpConfig, load_config, parse_host_port
from anycast_announcer.http.client import DEFAULT_URL

__all__ = ["TOKEN_FILE_ENV", "ApiTarget", "resolve_target", "target_of_config"]

TOKEN_FILE_ENV = "ANYCAST_ANNOUNCER_TOKEN_FILE"  # noqa: S105  # a variable name, not a secret

_LOOPBACK_FOR_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104  # names, not a bind


@dataclass(frozen=True, slots=True)
class ApiTarget:
    """One of ``url`` or ``unix_socket`` is used (the socket when set)."""

    url: str
    unix_socket: str | None
    token_file: str | None


def _url_of_listen(listen: str) -> str:
    host, port = parse_host_port(listen, allow_port_zero=False)
    host = _LOOPBACK_FOR_WILDCARD.get(host, host)
    try:
        literal_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        literal_v6 = False
    return f"http://[{host}]:{port}" if literal_v6 else f"http://{host}:{port}"


def target_of_config(http: HttpConfig, source: str) -> ApiTarget:
    """Where a sidecar with this ``http`` section answers; ValueError if nowhere."""
    if http.listen:
        return ApiTarget(_url_of_listen(http.listen), None, http.token_file)
    if http.unix_socket:
        return ApiTarget(DEFAULT_URL, http.unix_socket, http.token_file)
    raise ValueError(
        f"{source}: the sidecar serves no API (http.listen is '' and http.unix_socket is "
        "not set), so there is nothing to talk to"
    )


def resolve_target(
    *,
    config_path: str | None,
    url: str | None,
    unix_socket: str | None,
    token_file: str | None,
    mutating: bool,
) -> ApiTarget:
    """The API and token file of one CLI call (see the module's docstring for the order).

    Raises ConfigError for a bad config file and ValueError when it serves no API.
    """
    from_config: ApiTarget | None = None
    if config_path is not None:
        from_config = target_of_config(load_config(config_path).http, config_path)
    if unix_socket is not None or url is not None:
        where = ApiTarget(url or DEFAULT_URL, unix_socket, None)
    elif from_config is not None:
        where = from_config
    else:
        where = ApiTarget(DEFAULT_URL, None, None)
    chosen_token: str | None = None
    if mutating:
        chosen_token = (
            token_file
            or (from_config.token_file if from_config is not None else None)
            or os.environ.get(TOKEN_FILE_ENV)
            or None
        )
    return ApiTarget(where.url, where.unix_socket, chosen_token)
