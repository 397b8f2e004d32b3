"""Times as the operator surface writes them (shared by the status and history models)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["iso_time"]


def iso_time(at: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC (``2026-11-27T09:07:41.250Z``); None stays None."""
    if at is None or not math.isfinite(at):
        return None
    try:
        moment = datetime.fromtimestamp(at, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
