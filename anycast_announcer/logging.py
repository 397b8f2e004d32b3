"""structlog set-up: JSON lines by default, readable console output on a terminal.

Events are stable snake_case names with bound keys (``service``, ``prefix``, ``peer``,
``old``, ``new``, ``reason``), never formatted sentences, so logs can be searched and tests
can assert on them with ``structlog.testing.capture_logs``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure_logging"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(
    output_format: Literal["auto", "json", "console"] = "auto", level: str = "info"
) -> None:
    """Configure structlog for the process (idempotent)."""
    use_console = output_format == "console" or (output_format == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
