"""The core's one seam for log events: a logger the shell injects (aioquic's way).

The core never configures logging nor reaches for a global logger; whatever the shell
hands in (a bound structlog logger in the sidecar, a capturing one in tests) receives
stable snake_case event names with keyword fields.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Logger"]


class Logger(Protocol):
    """Where the core writes its log events (a structlog logger, bound by the shell)."""

    def info(self, event: str, **fields: Any) -> Any: ...
    def warning(self, event: str, **fields: Any) -> Any: ...
    def error(self, event: str, **fields: Any) -> Any: ...
