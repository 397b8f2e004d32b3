"""``SidecarStatus`` as JSON: the wire format of ``GET /status``.

Field names follow the status dataclasses one to one, so the Python and JSON views read
the same; this module only tidies what JSON cannot say directly: tuples become lists,
non-finite floats become ``null``, and every Unix time ``x_at`` gains an ``x_at_iso``
sibling (ISO 8601, UTC) for people reading it. The names are a contract (the CLI and
scripts read them): add fields, do not rename them. ``openapi.py`` describes the result.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from anycast_announcer.status import (
    ExabgpStatus,
    PeerStatus,
    PrefixStatus,
    ProbeStatus,
    ServiceStatus,
    SidecarStatus,
)

__all__ = ["iso_time", "status_to_json"]

JsonObject = dict[str, Any]


def iso_time(at: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC (``2026-11-27T09:07:41.250Z``); None stays None."""
    if at is None or not math.isfinite(at):
        return None
    try:
        moment = datetime.fromtimestamp(at, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float | None) -> float | None:
    # JSON has no NaN or Infinity; json.dumps would write them anyway and break readers.
    if value is None or not math.isfinite(value):
        return None
    return value


def _plain(value: object) -> object:
    """Free-form data (per-peer route attributes) made JSON-safe."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def _probe(probe: ProbeStatus) -> JsonObject:
    return {
        "at": _number(probe.at),
        "at_iso": iso_time(probe.at),
        "ok": probe.ok,
        "latency": _number(probe.latency),
        "reason": probe.reason,
    }


def _service(service: ServiceStatus) -> JsonObject:
    return {
        "name": service.name,
        "check_type": service.check_type,
        "state": service.state,
        "consecutive_successes": service.consecutive_successes,
        "consecutive_failures": service.consecutive_failures,
        "rise": service.rise,
        "fall": service.fall,
        "interval": _number(service.interval),
        "last_results": [_probe(probe) for probe in service.last_results],
        "last_change_at": _number(service.last_change_at),
        "last_change_at_iso": iso_time(service.last_change_at),
        "last_change_reason": service.last_change_reason,
    }


def _prefix(prefix: PrefixStatus) -> JsonObject:
    return {
        "prefix": prefix.prefix,
        "state": prefix.state,
        "reason": prefix.reason,
        "services": list(prefix.services),
        "require": prefix.require,
        "address_present": prefix.address_present,
        "interface": prefix.interface,
        "bandwidth_mbps": _number(prefix.bandwidth_mbps),
        "drain_phase": prefix.drain_phase,
        "drain_reason": prefix.drain_reason,
        "established_connections": prefix.established_connections,
        "dampening_penalty": _number(prefix.dampening_penalty),
        "routes": {str(peer): _plain(attributes) for peer, attributes in prefix.routes.items()},
    }


def _peer(peer: PeerStatus) -> JsonObject:
    return {
        "address": peer.address,
        "peer_as": peer.peer_as,
        "state": peer.state,
        "last_change_at": _number(peer.last_change_at),
        "last_change_at_iso": iso_time(peer.last_change_at),
        "last_change_reason": peer.last_change_reason,
    }


def _exabgp(exabgp: ExabgpStatus) -> JsonObject:
    return {
        "pid": exabgp.pid,
        "running": exabgp.running,
        "connected": exabgp.connected,
        "restarts": exabgp.restarts,
        "routes_acknowledged": exabgp.routes_acknowledged,
        "routes_desired": exabgp.routes_desired,
    }


def status_to_json(status: SidecarStatus) -> JsonObject:
    """The whole snapshot as a JSON-ready dict (see the module docstring for the rules)."""
    return {
        "version": status.version,
        "started_at": _number(status.started_at),
        "started_at_iso": iso_time(status.started_at),
        "uptime": _number(status.uptime),
        "config_path": status.config_path,
        "config_loaded_at": _number(status.config_loaded_at),
        "config_loaded_at_iso": iso_time(status.config_loaded_at),
        "last_reload_error": status.last_reload_error,
        "services": [_service(service) for service in status.services],
        "prefixes": [_prefix(prefix) for prefix in status.prefixes],
        "peers": [_peer(peer) for peer in status.peers],
        "exabgp": _exabgp(status.exabgp),
    }
