"""``ConfigError``, and pydantic's errors reworded as ``field.path: message`` lines."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from anycast_announcer.config.document import format_location, kind, short_repr

__all__ = ["PROBLEMS_SHOWN", "SECRET_FIELDS", "ConfigError", "validation_problems"]

SECRET_FIELDS = frozenset({"md5_password"})
"""Fields whose values never appear in an error message (nor in /status through one)."""


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


def validation_problems(error: ValidationError) -> list[str]:
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
