"""Configs and plans for the rescue unit tests."""

from __future__ import annotations

import ipaddress

from anycast_announcer.config import Config, parse_config
from anycast_announcer.rescue.model import RescuePlan, build_plan

BASE = """
bgp:
  local_as: 65201
  router_id: 10.2.1.2
  peers:
    - {address: 10.2.1.1, peer_as: 65101}
    - {address: "fd00:2:1::1", peer_as: 65101}
services:
  - name: web
    check: {type: tcp, host: 10.255.0.1, port: 8080}
prefixes:
  - {prefix: 10.255.0.1/32, services: [web]}
  - {prefix: "fd00:255::1/128", services: [web]}
rescue:
  members: [10.2.3.2, 10.2.1.2, 10.2.2.2]
"""


def config(extra: str = "", *, base: str = BASE) -> Config:
    """``base`` with ``extra`` lines appended under ``rescue:`` (indented by the caller)."""
    return parse_config(base + extra)


def plan(
    extra: str = "",
    *,
    local: str = "10.2.1.2",
    mtu: int = 1500,
    base: str = BASE,
) -> RescuePlan:
    """The plan of member ``local`` for ``BASE`` (+ rescue lines)."""
    return build_plan(
        config(extra, base=base), local_address=ipaddress.ip_address(local), underlay_mtu=mtu
    )
