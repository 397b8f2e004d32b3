"""Reading a YAML document safely: bounded in size, depth and alias expansion.

Theory of operation. A config file is read in three steps, and any failure in any of
them is a ``DocumentError`` whose message is one line meant for the user:

1. The file is read as at most ``MAX_DOCUMENT_BYTES`` bytes of UTF-8 (a device or a
   runaway file is refused without reading it all).
2. A first pass over the parser's *events* (no Python objects are built) measures the
   document: nesting depth, and the number of values it holds once every alias is
   expanded, computed per anchor without expanding anything. A 700-byte file of nested
   aliases ("billion laughs") describes billions of values; it is refused here, before
   anything could walk it, repr it or validate it. An alias to an anchor that is still
   open (a document that contains itself) is refused too.
3. Only then is the document constructed with a SafeLoader that also refuses duplicate
   and unhashable keys. Whatever a constructor raises (``!!int x``, an impossible
   ``!!timestamp``, a 5000-digit integer) becomes a message with its line and column.

Values are never repr'd whole in a message (``short_repr``): the input may be huge.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import yaml

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_VALUES",
    "DocumentError",
    "format_location",
    "kind",
    "load_yaml_document",
    "read_document",
    "short_repr",
]

MAX_DOCUMENT_BYTES = 1024 * 1024
"""The largest config file we read; 1,000 services and 200 prefixes take about 200 KiB."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists; our schema needs 6."""
MAX_VALUES = 100_000
"""Most values (scalars, mappings, lists) a document may hold with aliases expanded."""
_SHORT = 60
_MESSAGE_MAX = 200


class DocumentError(Exception):
    """The file cannot be read as a YAML document; ``str()`` is one line for the user."""


def short_repr(value: Any, limit: int = _SHORT) -> str:
    """A repr of at most about ``limit`` characters, computed without building a big one.

    Containers are described by their kind; strings are cut before repr; numbers whose
    text would be long (Python refuses to print integers over 4300 digits) are described.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool):
        return _short_int(value, limit)
    if isinstance(value, str | bool | float) or value is None:
        return repr(value)
    if isinstance(value, list | dict) and not value:
        return repr(value)
    if isinstance(value, list) and len(value) <= 8 and all(map(_is_scalar, value)):
        text = "[" + ", ".join(short_repr(item, limit // 4) for item in value) + "]"
        if len(text) <= limit:
            return text
    return kind(value)


def _short_int(value: int, limit: int) -> str:
    if value.bit_length() > 3 * limit:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value)
    return text if len(text) <= limit else f"an integer of {len(text)} digits"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def kind(value: Any, *, json: bool = False) -> str:
    """What a user would call a value's type: in YAML's words, or JSON's (``json``)."""
    if isinstance(value, dict):
        return "an object" if json else "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if json and isinstance(value, int | float):
        return "a number"
    return type(value).__name__


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_location(location: Iterable[Any]) -> str:
    """``bgp.peers[0].address`` from a pydantic error location."""
    text = ""
    for part in location:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif not isinstance(part, str) or not _PLAIN_KEY.fullmatch(part):
            # A mistyped key may hold anything, newlines included; quote it on one line.
            text += f"[{short_repr(part, 40)}]"
        else:
            text += f".{part}" if text else part
    return text


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MESSAGE_MAX else line[: _MESSAGE_MAX - 1] + "\u2026"


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def read_document(path: str | os.PathLike[str]) -> str:
    """The file's text; DocumentError if it is missing, too large or not UTF-8."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise DocumentError("file not found") from None
    except IsADirectoryError:
        raise DocumentError("is a directory, not a file") from None
    except PermissionError:
        raise DocumentError("permission denied") from None
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB, not a config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text (byte {exc.start})") from None


# libyaml's parser is about twenty times faster than PyYAML's pure-Python one, which
# matters because a reload parses on the event loop. The constructor stays PyYAML's.
_BaseLoader: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _SafeLoader(_BaseLoader):  # type: ignore[misc]  # a base chosen at import
    """SafeLoader that refuses duplicate or unhashable keys and explains failed tags."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            # e.g. `!!int x`, `!!timestamp 2024-13-45`: the constructor's own error.
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {_one_line(node.tag)} value: {_one_line(str(exc))}",
                node.start_mark,
            ) from None


def _construct_mapping(loader: _SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in mapping
        except TypeError:  # a mapping or list used as a key: `? {a: 1}`
            raise yaml.constructor.ConstructorError(
                None, None, f"a key cannot be {kind(key)}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {short_repr(key)}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Measure:
    """Depth and alias-expanded size of a document, from its parser events.

    ``stack`` holds, per open collection, its anchor and the values counted in it so far;
    ``anchors`` the expanded size of every finished anchor. Nothing is expanded: an alias
    adds its anchor's size, so a billion-laughs document is measured in a few steps.
    """

    def __init__(self) -> None:
        self.anchors: dict[str, int] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[tuple[str | None, int]] = []
        self.total = 0

    def event(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.CollectionStartEvent):
            self._start(event)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = self.stack.pop()
            if anchor is not None:
                self.open_anchors.discard(anchor)
            self._add(event, anchor, size)
        elif isinstance(event, yaml.AliasEvent):
            name = event.anchor or ""
            if name in self.open_anchors:
                raise _refused(
                    event, f"alias *{_one_line(name)} refers to a value that contains it"
                )
            # An unknown alias is left to the loader, which reports it with its position.
            self._add(event, None, self.anchors.get(name, 1))
        elif isinstance(event, yaml.ScalarEvent):
            self._add(event, event.anchor, 1)

    def _start(self, event: yaml.CollectionStartEvent) -> None:
        if len(self.stack) >= MAX_DEPTH:
            raise _refused(event, f"nested more than {MAX_DEPTH} levels deep")
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.stack.append((event.anchor, 1))

    def _add(self, event: yaml.Event, anchor: str | None, size: int) -> None:
        if anchor is not None:
            self.anchors[anchor] = size
        if self.stack:
            parent, counted = self.stack[-1]
            self.stack[-1] = (parent, counted + size)
            size += counted
        else:
            self.total += size
        if size > MAX_VALUES or self.total > MAX_VALUES:
            raise _refused(
                event,
                f"the document holds more than {MAX_VALUES} values, "
                "counting what its aliases expand to",
            )


def _refused(event: yaml.Event, problem: str) -> DocumentError:
    return DocumentError(f"invalid YAML: {_where(event.start_mark)}{problem}")


def _measure(text: str) -> None:
    """Refuse a document that is nested too deeply or expands to too many values."""
    measure = _Measure()
    for event in yaml.parse(text, Loader=_SafeLoader):
        measure.event(event)


def _explain(text: str, problem: str, mark: Any) -> str:
    """libyaml's message, with the character or alias it leaves out (PyYAML names them)."""
    lines = text.split("\n")
    if mark is None or not 0 <= mark.line < len(lines):
        return problem
    rest = lines[mark.line][mark.column :]
    if problem == "found character that cannot start any token" and rest:
        return f"found character {short_repr(rest[0])} that cannot start any token"
    if problem == "found undefined alias" and rest.startswith("*"):
        name = re.match(r"\*([^\s,\[\]{}]*)", rest)
        if name is not None:
            return f"found undefined alias {short_repr(name.group(1), 40)}"
    if problem == "exceeded maximum nesting depth":
        return f"nested more than {MAX_DEPTH} levels deep"
    return problem


def load_yaml_document(text: str) -> Any:
    """The document in ``text`` as Python data; DocumentError (one line) if it cannot be.

    Every failure is turned into DocumentError: YAML syntax, a tag that does not
    construct, an unhashable or duplicate key, excessive nesting or alias expansion,
    and even RecursionError or MemoryError, so a caller (a reload on the event loop)
    never sees anything else.
    """
    try:
        _measure(text)
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506  # a SafeLoader subclass
    except DocumentError:
        raise
    except yaml.MarkedYAMLError as exc:
        problem = _explain(text, exc.problem or exc.context or "invalid", exc.problem_mark)
        raise DocumentError(
            f"invalid YAML: {_where(exc.problem_mark)}{_one_line(problem)}"
        ) from None
    except yaml.reader.ReaderError as exc:
        # Its str() spans two lines; the character and offset are what the user needs.
        raise DocumentError(
            f"invalid YAML: character #x{exc.character:04x} at offset {exc.position} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise DocumentError(f"invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise DocumentError("invalid YAML: nested too deeply") from None
    except MemoryError:
        raise DocumentError("invalid YAML: not enough memory to load the document") from None
    except Exception as exc:  # a parser or constructor bug must not reach the caller
        raise DocumentError(f"invalid YAML: {type(exc).__name__}: {_one_line(str(exc))}") from None
