"""The status page's HTML vocabulary, shared by the present (page) and the past (history)."""

from __future__ import annotations

from html import escape

__all__ = ["STATE_CLASSES", "text"]

STATE_CLASSES = frozenset(
    {"announced", "withdrawn", "draining", "drained", "dampened", "up", "down", "unknown"}
)
"""States the stylesheets colour; any other state is drawn as ``other``."""


def text(value: object) -> str:
    """``value`` as HTML text, safe in element content and in quoted attributes."""
    return escape(str(value), quote=True)
