"""The operator surface's requests and answers, as pydantic models.

Request bodies are validated by these models and nothing else, and the OpenAPI document
is generated from them (with the status models of ``anycast_announcer.status``): one
definition of every field. Validation runs in ``mode="before"`` validators that word
each problem for the person who sent it (``prefixes[1]: 'web' is not an IPv4 or IPv6
prefix``), and pydantic's own checks then hold the result to the declared types.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from anycast_announcer.config import parse_prefix
from anycast_announcer.config.document import kind

__all__ = [
    "DEFAULT_DRAIN_REASON",
    "MAX_PREFIXES",
    "MAX_REASON",
    "Accepted",
    "DrainRequest",
    "ErrorAnswer",
    "HealthAnswer",
    "ReadyAnswer",
    "Refused",
    "ReloadRequest",
    "UndrainRequest",
    "json_kind",
]

DEFAULT_DRAIN_REASON = "drained via the API"
PREFIX_PATTERN = r"^[0-9A-Fa-f:.]{2,60}/[0-9]{1,3}$"
"""A prefix's outline; ``ipaddress`` then checks it for real (host bits, lengths)."""
REASON_PATTERN = r"^[\x20-\x7e]+$"
"""Printable ASCII on one line: reasons reach logs, the status page and terminals, where
control characters, NEL, U+2028 and bidirectional overrides would forge or hide text."""
MAX_REASON = 256
MAX_PREFIXES = 1024

_PREFIX_SHAPE = re.compile(PREFIX_PATTERN)
_REASON_SHAPE = re.compile(REASON_PATTERN)

PrefixText = Annotated[str, StringConstraints(pattern=PREFIX_PATTERN, max_length=64)]
Prefixes = Annotated[
    list[PrefixText],
    Field(
        min_length=1,
        max_length=MAX_PREFIXES,
        description="prefixes exactly as configured, e.g. 10.255.0.1/32; omit for all",
    ),
]
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REASON, pattern=REASON_PATTERN),
    Field(description=f"shown in the status and the logs; default '{DEFAULT_DRAIN_REASON}'"),
]


def _omitted_when_absent(schema: dict[str, Any]) -> None:
    """Document an optional key as absent rather than null: drop the null default."""
    schema.pop("default", None)


def json_kind(value: object) -> str:
    """What a JSON value is, in the words of an error message."""
    return kind(value, json=True)


def _check_prefixes(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"prefixes: must be a list of prefixes, not {json_kind(value)}")
    if not value:
        raise ValueError("prefixes: must not be empty (leave it out to mean every prefix)")
    if len(value) > MAX_PREFIXES:
        raise ValueError(f"prefixes: at most {MAX_PREFIXES} entries")
    result: list[str] = []
    for index, item in enumerate(value):
        where = f"prefixes[{index}]"
        if not isinstance(item, str):
            raise ValueError(f"{where}: must be a string, not {json_kind(item)}")
        if len(item) > 64 or not _PREFIX_SHAPE.fullmatch(item):
            raise ValueError(f"{where}: {item[:64]!r} is not an IPv4 or IPv6 prefix")
        try:
            network = parse_prefix(item)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        if str(network) not in result:
            result.append(str(network))
    return result


def _check_reason(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"reason: must be a string, not {json_kind(value)}")
    if not value:
        raise ValueError("reason: must not be empty")
    if len(value) > MAX_REASON:
        raise ValueError(f"reason: at most {MAX_REASON} characters")
    if not _REASON_SHAPE.fullmatch(value):
        raise ValueError("reason: must be one line of printable ASCII text")
    return value


class _Request(BaseModel):
    """A request body: a JSON object with only the documented keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _an_object_with_known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"the body must be a JSON object, not {json_kind(data)}")
        allowed = tuple(cls.model_fields)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            listed = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"unknown field {unknown[0]!r} (allowed: {listed})")
        return data


class DrainRequest(_Request):
    """``POST /drain``: which prefixes, and why."""

    prefixes: Prefixes | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_omitted_when_absent
    )
    reason: Reason = DEFAULT_DRAIN_REASON

    @model_validator(mode="before")
    @classmethod
    def _worded_checks(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "prefixes" in data:
                data["prefixes"] = _check_prefixes(data["prefixes"])
            if "reason" in data:
                data["reason"] = _check_reason(data["reason"])
        return data


class UndrainRequest(_Request):
    """``POST /undrain``: which prefixes."""

    prefixes: Prefixes | SkipJsonSchema[None] = Field(
        default=None, json_schema_extra=_omitted_when_absent
    )

    @model_validator(mode="before")
    @classmethod
    def _worded_checks(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prefixes" in data:
            data = {**data, "prefixes": _check_prefixes(data["prefixes"])}
        return data


class ReloadRequest(_Request):
    """``POST /reload`` takes no fields (an empty object, or no body)."""


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorAnswer(_Answer):
    """Every error has this shape."""

    error: str = Field(description="what went wrong")


class HealthAnswer(_Answer):
    """``GET /healthz``."""

    status: Literal["ok", "unhealthy"]
    error: str | SkipJsonSchema[None] = Field(
        default=None, description="why it is unhealthy", json_schema_extra=_omitted_when_absent
    )


class ReadyAnswer(_Answer):
    """``GET /readyz``."""

    status: Literal["ready", "not_ready"]
    error: str | SkipJsonSchema[None] = Field(
        default=None, description="why it is not ready", json_schema_extra=_omitted_when_absent
    )


class Accepted(_Answer):
    """The request was accepted; ``prefixes`` lists the ones it applies to."""

    ok: Literal[True] = True
    message: str
    prefixes: list[str]


class Refused(_Answer):
    """The sidecar refused the request (unknown prefix, invalid config on reload, ...)."""

    error: str = Field(description="why the sidecar refused")
    prefixes: list[str]
