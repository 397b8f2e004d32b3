"""The OpenAPI 3.1 document served at ``GET /openapi.json``.

Only the paths are written here, by hand, next to the handlers they describe. Every
schema in ``components`` is generated from the models the code itself uses: the status
models (``anycast_announcer.status``) for what the sidecar answers, the request and
answer models (``http/models.py``) for what the API accepts and replies. Tests check
that every route the app registers appears here and fuzz the API from this document.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from anycast_announcer import __version__
from anycast_announcer.historymodels import WINDOWS, SidecarHistory
from anycast_announcer.http.models import (
    Accepted,
    DrainRequest,
    ErrorAnswer,
    HealthAnswer,
    ReadyAnswer,
    Refused,
    UndrainRequest,
)
from anycast_announcer.status import SidecarStatus

__all__ = ["openapi_document"]

Schema = dict[str, Any]

_REF_TEMPLATE = "#/components/schemas/{model}"
_ANSWERS: tuple[type[BaseModel], ...] = (
    ErrorAnswer,
    HealthAnswer,
    ReadyAnswer,
    Accepted,
    Refused,
    SidecarStatus,
    SidecarHistory,
)
_REQUESTS: tuple[type[BaseModel], ...] = (DrainRequest, UndrainRequest)


def _ref(name: str) -> Schema:
    return {"$ref": _REF_TEMPLATE.format(model=name)}


@functools.cache
def _component_schemas() -> dict[str, Schema]:
    """Every model's JSON Schema, nested models hoisted into components of their own."""
    schemas: dict[str, Schema] = {}
    modes: tuple[tuple[tuple[type[BaseModel], ...], JsonSchemaMode], ...] = (
        (_ANSWERS, "serialization"),
        (_REQUESTS, "validation"),
    )
    for models, mode in modes:
        for model in models:
            schema = model.model_json_schema(mode=mode, ref_template=_REF_TEMPLATE)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
    return schemas


def _json(schema_name: str, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(schema_name)}},
        **extra,
    }


def _error(description: str) -> Schema:
    return _json("ErrorAnswer", description)


_UNAUTHORIZED = _json(
    "ErrorAnswer",
    "missing or wrong bearer token",
    headers={
        "WWW-Authenticate": {
            "description": "always 'Bearer ...'",
            "schema": {"type": "string", "pattern": "^Bearer"},
        }
    },
)


_WINDOW_PARAMETER: Schema = {
    "name": "window",
    "in": "query",
    "required": False,
    "description": "the last hour (10 s buckets, the default) or the last day (5 min buckets)",
    "schema": {"type": "string", "enum": list(WINDOWS), "default": "hour"},
}
_BAD_WINDOW = _error("window is neither 'hour' nor 'day'")


def _mutating(summary: str, description: str, body: str | None) -> Schema:
    responses: dict[str, Schema] = {
        "200": _json("Accepted", "accepted"),
        "401": _UNAUTHORIZED,
        "403": _error("no token configured (http.token_file): the endpoint is disabled"),
        "409": _json(
            "Refused",
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
                    "parameters": [_WINDOW_PARAMETER],
                    "responses": {
                        "200": {
                            "description": "HTML page, refreshes itself every 5 seconds; "
                            "its timelines cover the window",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        },
                        "400": _BAD_WINDOW,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness: the event loop answers and ExaBGP runs",
                    "responses": {
                        "200": _json("HealthAnswer", "alive"),
                        "503": _json("HealthAnswer", "ExaBGP is not running"),
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: ExaBGP runs, the first probe round is done, and "
                    "the sidecar has no resource fault",
                    "responses": {
                        "200": _json("ReadyAnswer", "ready"),
                        "503": _json("ReadyAnswer", "not ready yet"),
                    },
                }
            },
            "/status": {
                "get": {
                    "summary": "A snapshot of services, prefixes, peers and ExaBGP",
                    "responses": {"200": _json("SidecarStatus", "the snapshot")},
                }
            },
            "/history": {
                "get": {
                    "summary": "The last hour or day: state changes with their reasons, "
                    "probe latency and failures, rescued packets (in memory, bounded)",
                    "parameters": [_WINDOW_PARAMETER],
                    "responses": {
                        "200": _json("SidecarHistory", "the history over the window"),
                        "400": _BAD_WINDOW,
                    },
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
            "schemas": copy.deepcopy(_component_schemas()),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
