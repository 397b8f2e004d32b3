"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

Written by hand next to the handlers it describes; tests check that every route the app
registers appears here and fuzz the API from this document, so the two cannot drift apart
silently. The request-body rules here are the ones ``app.py`` enforces.
"""

from __future__ import annotations

import copy
from typing import Any

from anycast_announcer import __version__

__all__ = [
    "DRAIN_KEYS",
    "MAX_PREFIXES",
    "MAX_REASON",
    "PREFIX_PATTERN",
    "REASON_PATTERN",
    "UNDRAIN_KEYS",
    "openapi_document",
]

PREFIX_PATTERN = r"^[0-9A-Fa-f:.]{2,60}/[0-9]{1,3}$"
"""A prefix's outline; ``ipaddress`` then checks it for real (host bits, lengths)."""
REASON_PATTERN = r"^[^\u0000-\u001f\u007f]+$"
"""One line of printable text: reasons end up in logs, the status page and terminals."""
MAX_REASON = 256
MAX_PREFIXES = 1024
DRAIN_KEYS = ("prefixes", "reason")
UNDRAIN_KEYS = ("prefixes",)

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(type_name: str, **extra: Any) -> Schema:
    return {"type": [type_name, "null"], **extra}


def _object(properties: dict[str, Schema], description: str = "") -> Schema:
    schema: Schema = {
        "type": "object",
        "required": sorted(properties),
        "properties": properties,
    }
    if description:
        schema["description"] = description
    return schema


_TIME = _nullable("number", description="Unix seconds")
_ISO = _nullable("string", format="date-time", description="the same time, ISO 8601 UTC")

_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "what went wrong"}},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unhealthy"]},
            "error": {"type": "string", "description": "why it is unhealthy"},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not_ready"]},
            "error": {"type": "string", "description": "why it is not ready"},
        },
    },
    "Prefixes": {
        "type": "array",
        "description": "prefixes exactly as configured, e.g. 10.255.0.1/32; omit for all",
        "minItems": 1,
        "maxItems": MAX_PREFIXES,
        "items": {"type": "string", "pattern": PREFIX_PATTERN, "maxLength": 64},
    },
    "DrainRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prefixes": _ref("Prefixes"),
            "reason": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_REASON,
                "pattern": REASON_PATTERN,
                "description": "shown in the status and the logs; default 'drained via the API'",
            },
        },
    },
    "UndrainRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"prefixes": _ref("Prefixes")},
    },
    "ControlResult": _object(
        {
            "ok": {"type": "boolean", "const": True},
            "message": {"type": "string"},
            "prefixes": {"type": "array", "items": {"type": "string"}},
        },
        "the request was accepted; prefixes lists the ones it applies to",
    ),
    "ControlRefused": {
        "type": "object",
        "required": ["error", "prefixes"],
        "properties": {
            "error": {"type": "string", "description": "why the sidecar refused"},
            "prefixes": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ProbeStatus": _object(
        {
            "at": _TIME,
            "at_iso": _ISO,
            "ok": {"type": "boolean"},
            "latency": _nullable("number", description="seconds"),
            "reason": {"type": "string"},
        }
    ),
    "ServiceStatus": _object(
        {
            "name": {"type": "string"},
            "check_type": {"type": "string"},
            "state": {"type": "string", "description": "unknown, up or down"},
            "consecutive_successes": {"type": "integer"},
            "consecutive_failures": {"type": "integer"},
            "rise": {"type": "integer"},
            "fall": {"type": "integer"},
            "interval": _nullable("number", description="seconds"),
            "last_results": {
                "type": "array",
                "items": _ref("ProbeStatus"),
                "description": "newest last",
            },
            "last_change_at": _TIME,
            "last_change_at_iso": _ISO,
            "last_change_reason": _nullable("string"),
        }
    ),
    "PrefixStatus": _object(
        {
            "prefix": {"type": "string"},
            "state": {
                "type": "string",
                "description": "announced, withdrawn, draining, drained or dampened",
            },
            "reason": {"type": "string"},
            "services": {"type": "array", "items": {"type": "string"}},
            "require": {"type": "string", "description": "all or any"},
            "address_present": {"type": "boolean"},
            "interface": {"type": "string"},
            "bandwidth_mbps": _nullable("number"),
            "drain_phase": {
                "type": "string",
                "description": "none, hook, waiting_connections, graceful_shutdown, withdrawn",
            },
            "drain_reason": _nullable("string"),
            "established_connections": _nullable("integer", description="during a drain"),
            "dampening_penalty": _nullable("number"),
            "routes": {
                "type": "object",
                "description": "per peer: the attributes being sent",
                "additionalProperties": {"type": "object"},
            },
        }
    ),
    "PeerStatus": _object(
        {
            "address": {"type": "string"},
            "peer_as": {"type": "integer"},
            "state": {"type": "string", "description": "up or down"},
            "last_change_at": _TIME,
            "last_change_at_iso": _ISO,
            "last_change_reason": _nullable("string"),
        }
    ),
    "ExabgpStatus": _object(
        {
            "pid": _nullable("integer"),
            "running": {"type": "boolean"},
            "connected": {"type": "boolean"},
            "restarts": {"type": "integer"},
            "routes_acknowledged": {"type": "integer"},
            "routes_desired": {"type": "integer"},
        }
    ),
    "SidecarStatus": _object(
        {
            "version": {"type": "string"},
            "started_at": _TIME,
            "started_at_iso": _ISO,
            "uptime": _nullable("number", description="seconds"),
            "config_path": {"type": "string"},
            "config_loaded_at": _TIME,
            "config_loaded_at_iso": _ISO,
            "last_reload_error": _nullable("string"),
            "services": {"type": "array", "items": _ref("ServiceStatus")},
            "prefixes": {"type": "array", "items": _ref("PrefixStatus")},
            "peers": {"type": "array", "items": _ref("PeerStatus")},
            "exabgp": _ref("ExabgpStatus"),
        }
    ),
}


def _json(schema_name: str, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
        **extra,
    }


def _error(description: str) -> Schema:
    return _json("Error", description)


_UNAUTHORIZED = _json(
    "Error",
    "missing or wrong bearer token",
    headers={
        "WWW-Authenticate": {
            "description": "always 'Bearer ...'",
            "schema": {"type": "string", "pattern": "^Bearer"},
        }
    },
)


def _mutating(summary: str, description: str, body: str | None) -> Schema:
    responses: dict[str, Schema] = {
        "200": _json("ControlResult", "accepted"),
        "401": _UNAUTHORIZED,
        "403": _error("no token configured (http.token_file): the endpoint is disabled"),
        "409": _json(
            "ControlRefused",
            "the sidecar refused the request (unknown prefix, invalid config on reload, ...)",
        ),
    }
    operation: Schema = {
        "summary": summary,
        "description": description,
        "security": [{"bearer": []}],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(body)}},
        }
        responses["400"] = _error("the body is not valid JSON (or not UTF-8)")
        responses["413"] = _error("the body is larger than http.max_body_bytes")
        responses["415"] = _error("a body was sent that is not application/json")
        responses["422"] = _error("valid JSON, but a field is wrong; the message names it")
    return operation


def openapi_document() -> Schema:
    """The whole document, as a fresh dict (callers may serialize or modify it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "anycast-announcer",
            "version": __version__,
            "description": (
                "Status and control of the anycast-announcer sidecar. Reads are open; "
                "drain, undrain and reload need 'Authorization: Bearer <token>' with the "
                'token from http.token_file. Every error is JSON {"error": "..."}.'
            ),
        },
        "paths": {
            "/": {
                "get": {
                    "summary": "Status page for people",
                    "responses": {
                        "200": {
                            "description": "HTML page, refreshes itself every 5 seconds",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the event loop answers and ExaBGP runs",
                    "responses": {
                        "200": _json("Health", "alive"),
                        "503": _json("Health", "ExaBGP is not running"),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: ExaBGP runs and the first probe round is done",
                    "responses": {
                        "200": _json("Ready", "ready"),
                        "503": _json("Ready", "not ready yet"),
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "A snapshot of services, prefixes, peers and ExaBGP",
                    "responses": {"200": _json("SidecarStatus", "the snapshot")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/drain": {
                "post": _mutating(
                    "Drain prefixes",
                    "Start draining the given prefixes (every prefix without 'prefixes'). "
                    "The sidecar withdraws them gracefully and keeps them withdrawn until "
                    "undrain, whatever their health.",
                    "DrainRequest",
                )
            },
            "/undrain": {
                "post": _mutating(
                    "Undrain prefixes",
                    "Stop draining the given prefixes (every prefix without 'prefixes'); "
                    "they are announced again when healthy.",
                    "UndrainRequest",
                )
            },
            "/reload": {
                "post": _mutating(
                    "Reload the configuration",
                    "Re-read the config file; an invalid file changes nothing (409).",
                    None,
                )
            },
        },
        "components": {
            "schemas": copy.deepcopy(_SCHEMAS),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
