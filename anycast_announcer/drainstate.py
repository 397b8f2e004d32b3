"""The drain state file: operator drains that survive a restart.

(Interim version; the hardened writer and tolerant loader replace it.)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DrainStateError", "PersistedDrain", "load_drain_state", "save_drain_state"]


class DrainStateError(Exception):
    """The state file exists but cannot be read (the message says why)."""


@dataclass(frozen=True, slots=True)
class PersistedDrain:
    """One prefix's drain as written to the state file."""

    prefix: str
    reason: str
    started_at: float


def save_drain_state(path: str, drains: Sequence[PersistedDrain]) -> None:
    """Replace the state file with ``drains``."""
    state = {d.prefix: {"reason": d.reason, "started_at": d.started_at} for d in drains}
    target = Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"drains": state}, indent=1), encoding="utf-8")
    temporary.replace(target)


def load_drain_state(path: str) -> list[PersistedDrain]:
    """The drains in the state file; none when it does not exist."""
    if not os.path.exists(path):
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        drains = data["drains"]
        if not isinstance(drains, dict):
            raise TypeError("'drains' is not a mapping")
        return [
            PersistedDrain(
                str(name),
                str(entry.get("reason") or "restored"),
                float(entry.get("started_at") or 0.0),
            )
            for name, entry in drains.items()
            if isinstance(entry, dict)
        ]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DrainStateError(f"cannot read drain state {path}: {error}") from None
