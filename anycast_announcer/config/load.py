"""Reading a config file: YAML safely, then the models; every failure a ConfigError."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from anycast_announcer.config.document import (
    DocumentError,
    kind,
    load_yaml_document,
    read_document,
)
from anycast_announcer.config.errors import ConfigError, validation_problems
from anycast_announcer.config.root import Config

__all__ = ["load_config", "parse_config"]


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
        raise ConfigError(source, validation_problems(exc)) from None
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
