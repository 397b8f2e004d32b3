"""The configuration reference (``docs/configuration.md``), written from the models.

The models are the one source: each field's type and range come from its JSON Schema,
its default from pydantic, its description from ``Field(description=...)``. A unit test
regenerates the page and fails when the committed file differs, so the reference cannot
drift from what ``check-config`` enforces. Regenerate it with
``anycast-announcer schema --markdown > docs/configuration.md``.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from anycast_announcer.config.root import Config

__all__ = ["Section", "field_paths", "markdown", "sections"]

_FORMATS = {
    "ipvanyaddress": "IP address",
    "ipv4": "IPv4 address",
    "ipvanynetwork": "IP prefix",
    "ipv4network": "IPv4 prefix",
}

PREAMBLE = """\
# Configuration reference

<!-- Generated from the pydantic models by `anycast-announcer schema --markdown`;
do not edit by hand: change the model's `Field(description=...)` and regenerate.
tests/unit/test_config_reference.py fails when this file is stale. -->

The sidecar reads one YAML file (`anycast-announcer run -c FILE`;
`anycast-announcer check-config FILE` validates it without running anything).
[`configs/anycast-announcer.yaml`](../configs/anycast-announcer.yaml) shows every field
below, commented where it is optional. `anycast-announcer schema` prints the same
rules as JSON Schema, for editors.

Rules that hold everywhere:

- **Unknown keys are errors**, so a typo never passes silently.
- **Numbers are strict.** `yes`, `on`, `true` are booleans, never 1; `"8080"` (a number
  in quotes) is a string; `.nan` and `.inf` are refused.
- **Durations are seconds.** A *number of seconds* takes fractions (`0.5`). A
  *whole number of seconds* (`bgp.hold_time` and the rescue timers, which end up in
  protocol fields and nftables timeouts that count whole seconds) takes `9` or `9.0`,
  and refuses `9.5` with a message saying so.
- **Addresses and prefixes are text** (`10.0.0.1`, `10.255.0.1/32`); a prefix with host
  bits set is refused with the prefix it probably meant.
- A **range** `a to b` includes both ends; `> a` excludes it.
- Every problem in a file is reported at once, as `path: message` lines, and nothing of
  an invalid file is applied (at start, or at reload).
"""


@dataclass(frozen=True, slots=True)
class Section:
    """One model, where it sits in the file (``services[].check (type: tcp)``)."""

    path: str
    model: type[BaseModel]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes a field's annotation holds (through lists, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in typing.get_args(annotation):
        for model in _models_in(argument):
            if model not in found:
                found.append(model)
    return found


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    if origin in {typing.Union, types.UnionType}:
        return any(_is_list(argument) for argument in typing.get_args(annotation))
    return origin is list


def _variant(model: type[BaseModel]) -> str:
    """``(type: tcp)`` for a member of a union told apart by its ``type`` field."""
    field = model.model_fields.get("type")
    if field is None:
        return ""
    values = typing.get_args(field.annotation)
    return f" (type: {' / '.join(str(value) for value in values)})" if values else ""


def sections(model: type[BaseModel] = Config, path: str = "") -> Iterator[Section]:
    """Every model of the file, depth first, the root (path ``""``) first."""
    yield Section(path, model)
    for name, field in model.model_fields.items():
        models = _models_in(field.annotation)
        child = f"{path}.{name}" if path else name
        if _is_list(field.annotation):
            child += "[]"
        for nested in models:
            suffix = _variant(nested) if len(models) > 1 else ""
            yield from sections(nested, child + suffix)


def field_paths() -> list[str]:
    """``section.field`` for every field of every section (``services[].interval``)."""
    return [
        f"{section.path}.{name}" if section.path else name
        for section in sections()
        for name in section.model.model_fields
    ]


def _anchor(path: str) -> str:
    text = "".join(char for char in path.lower() if char.isalnum() or char in " -_")
    return "#" + text.replace(" ", "-")


def _title(path: str) -> str:
    return f"`{path}`" if path else "The file (top level)"


_SCALARS = {
    "integer": "whole number",
    "number": "number",
    "boolean": "`true` or `false`",
    "string": "text",
}


def _type_text(schema: dict[str, Any], links: dict[str, str]) -> str:
    """How a field's JSON Schema reads in the type column."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return links.get(name, name)
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            options = [option for option in schema[union] if option.get("type") != "null"]
            return " or ".join(dict.fromkeys(_type_text(option, links) for option in options))
    return _container_or_scalar(schema, links)


def _container_or_scalar(schema: dict[str, Any], links: dict[str, str]) -> str:
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), links)}"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"map of text to {_type_text(values, links)}" if values else "mapping"
    if kind == "string" and schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    return _SCALARS.get(str(kind), "any")


def _number(value: float) -> str:
    return f"{value:,g}" if abs(value) < 1e6 else f"{value:,.0f}"


def _bounds(schema: dict[str, Any], low: str, high: str, unit: str = "") -> list[str]:
    """``a to b``, ``≥ a``, ``> a``... for one pair of JSON Schema keywords."""
    lower = schema.get(low)
    upper = schema.get(high)
    excl_lower = schema.get("exclusiveMinimum") if low == "minimum" else None
    excl_upper = schema.get("exclusiveMaximum") if high == "maximum" else None
    if lower is not None and upper is not None:
        return [f"{_number(lower)} to {_number(upper)}{unit}"]
    parts = []
    if lower is not None:
        parts.append(f"≥ {_number(lower)}{unit}")
    if excl_lower is not None:
        parts.append(f"> {_number(excl_lower)}")
    if upper is not None:
        parts.append(f"≤ {_number(upper)}{unit}")
    if excl_upper is not None:
        parts.append(f"< {_number(excl_upper)}")
    return parts


def _range_text(schema: dict[str, Any]) -> str:
    for union in ("anyOf", "oneOf"):
        if union in schema:
            texts = [_range_text(option) for option in schema[union]]
            return "; ".join(text for text in dict.fromkeys(texts) if text)
    parts = _bounds(schema, "minimum", "maximum")
    parts += _bounds(schema, "minLength", "maxLength", " characters")
    parts += _bounds(schema, "minItems", "maxItems", " items")
    if "pattern" in schema:
        parts.append(f"matches `{schema['pattern']}`")
    items = schema.get("items")
    if isinstance(items, dict):
        inner = _range_text(items)
        if inner:
            parts.append(f"each {inner}")
    return ", ".join(parts)


def _value_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network | ipaddress.IPv4Address):
        return f"`{value}`"
    if isinstance(value, ipaddress.IPv6Address):
        return f"`{value}`"
    if isinstance(value, BaseModel):
        return "its defaults"
    if isinstance(value, str):
        return f"`{json.dumps(value)}`" if value == "" else f"`{value}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{json.dumps(value, default=str)}`"


def _default_text(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "**required**"
    if field.default is PydanticUndefined:
        return _value_text(field.get_default(call_default_factory=True))
    return _value_text(field.default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section_markdown(section: Section, links: dict[str, str]) -> list[str]:
    schema = section.model.model_json_schema()
    lines = [f"## {_title(section.path)}", ""]
    if section.model.__doc__:
        lines += [" ".join(section.model.__doc__.split()), ""]
    lines += ["| field | type | default | range | description |", "|---|---|---|---|---|"]
    for name, field in section.model.model_fields.items():
        prop = schema["properties"][name]
        description = field.description or prop.get("description", "")
        row = [
            f"`{name}`",
            _type_text(prop, links),
            _default_text(section.model, name),
            _range_text(prop),
            description,
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    lines.append("")
    return lines


def markdown() -> str:
    """The whole of ``docs/configuration.md``."""
    every = list(sections())
    links: dict[str, str] = {}
    for section in every:
        # A model used in several places (none today) links to its first section.
        links.setdefault(section.model.__name__, f"[`{section.path}`]({_anchor(section.path)})")
    # Unions of models link to each member's section, joined by "or" in _type_text.
    lines = [PREAMBLE, "## Contents", ""]
    lines += [f"- [{_title(section.path)}]({_anchor(_title(section.path))})" for section in every]
    lines.append("")
    for section in every:
        lines += _section_markdown(section, links)
    return "\n".join(lines).rstrip("\n") + "\n"
