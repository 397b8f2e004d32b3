"""What may be written into ExaBGP's configuration file and text API, and how (pure).

ExaBGP 5.0 reads its configuration line by line and, before tokenising a line, resolves
backslash escapes in it (``\\n``, ``\\u0022``, and ``\\x`` for any other ``x``). A
single or double quote then opens a quoted word that the *other* quote character also
ends, so neither quote can appear inside a quoted word. Inside quotes, blanks, ``#``,
``;``, braces, brackets and commas are plain characters. ExaBGP sends an MD5 password to
the kernel as ``bytes(password, 'ascii')``, and the text API is split on newlines.

So a value written into ExaBGP's text is safe exactly when it is printable ASCII without
backslashes or quotes, and, outside quotes, without blanks or separators. Every check here
is a full match over explicit ASCII classes: Python's ``$`` also matches before a final
newline, and ``\\d`` matches any Unicode digit (``"\\u0661"``), both of which let a value
split a command or crash ExaBGP's ASCII decoding.
"""

from __future__ import annotations

import re

__all__ = [
    "AS_NUMBER_MAX",
    "MD5_PASSWORD_MAX",
    "TWO_BYTE_MAX",
    "community_problem",
    "large_community_problem",
    "md5_password_problem",
    "quoted",
    "quoted_word_problem",
]

AS_NUMBER_MAX = 4_294_967_295
TWO_BYTE_MAX = 65_535
MD5_PASSWORD_MAX = 80
"""TCP_MD5SIG_MAXKEYLEN in Linux: the longest key the kernel takes."""

_COMMUNITY = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_LARGE_COMMUNITY = re.compile(r"([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,10})")

_QUOTE_BREAKERS = frozenset("\"'\\")
"""Characters ExaBGP's tokeniser gives a meaning even inside a quoted word."""


def _printable_ascii(text: str, *, blank_ok: bool) -> bool:
    low = 0x20 if blank_ok else 0x21
    return all(low <= ord(char) <= 0x7E for char in text)


def community_problem(value: str) -> str | None:
    """Why ``value`` is not a standard community ``A:B`` (0..65535 each), or None."""
    match = _COMMUNITY.fullmatch(value)
    if match is None or any(int(part) > TWO_BYTE_MAX for part in match.groups()):
        return "is not a community 'A:B' with A, B in 0..65535 (ASCII digits)"
    return None


def large_community_problem(value: str) -> str | None:
    """Why ``value`` is not a large community ``A:B:C`` (32 bits each), or None."""
    match = _LARGE_COMMUNITY.fullmatch(value)
    if match is None or any(int(part) > AS_NUMBER_MAX for part in match.groups()):
        return "is not a large community 'A:B:C' with each part in 0..4294967295 (ASCII digits)"
    return None


def md5_password_problem(value: str) -> str | None:
    """Why ``value`` cannot be an MD5 password, or None; never repeats the value.

    Allowed: 1 to 80 printable ASCII characters other than blanks, quotes and the
    backslash. Those three are refused rather than escaped because ExaBGP would read an
    escape differently from the leaf (``Pa\\ss`` became ``Pass``).
    """
    if not 1 <= len(value) <= MD5_PASSWORD_MAX:
        return f"must be 1 to {MD5_PASSWORD_MAX} characters long"
    if not _printable_ascii(value, blank_ok=False):
        return "must be printable ASCII without blanks (no tabs, newlines or non-ASCII letters)"
    if _QUOTE_BREAKERS.intersection(value):
        return "must not contain quotes (\" or ') or backslashes"
    return None


def quoted_word_problem(value: str) -> str | None:
    """Why ``value`` cannot be written as one quoted word of ExaBGP's config, or None."""
    if not _printable_ascii(value, blank_ok=True):
        return "must be printable ASCII (no control characters or non-ASCII letters)"
    if _QUOTE_BREAKERS.intersection(value):
        return "must not contain quotes (\" or ') or backslashes"
    return None


def quoted(value: str, what: str) -> str:
    """``value`` as one quoted word of ExaBGP's config; ValueError if it cannot be one.

    The error names ``what`` and never the value itself, which may be a secret.
    """
    problem = quoted_word_problem(value)
    if problem is not None:
        raise ValueError(f"cannot write {what} into ExaBGP's configuration: it {problem}")
    return f'"{value}"'
