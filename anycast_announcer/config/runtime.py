"""How the sidecar itself runs: ``logging:``, ``exabgp:`` and ``detection:``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict, field_validator

from anycast_announcer.config.syntax import quoted_word_problem
from anycast_announcer.config.types import Float, Seconds, StrictModel

__all__ = ["RUN_DIR_MAX", "WATCHDOG_MIN", "DetectionConfig", "ExabgpConfig", "LoggingConfig"]


class LoggingConfig(StrictModel):
    """Log output."""

    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: console on a terminal, JSON lines otherwise"
    )
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="the lowest level written"
    )


WATCHDOG_MIN = 3.0
"""The shortest watchdog: heartbeats every second, so a 2 s stall of the loop is survived."""
RUN_DIR_MAX = 107 - len("/api.sock")
"""sun_path holds 108 bytes (one of them the NUL) and the API socket lives in run_dir."""


def _run_dir(value: str) -> str:
    # Written quoted into ExaBGP's `run` line (as the socket's directory).
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    if len(value.encode()) > RUN_DIR_MAX:
        raise ValueError(f"must be at most {RUN_DIR_MAX} bytes (the API socket lives in it)")
    if (problem := quoted_word_problem(value)) is not None:
        raise ValueError(problem)
    return value


RunDir = Annotated[str, Strict(), AfterValidator(_run_dir)]


class ExabgpConfig(StrictModel):
    """How the ExaBGP child process is run."""

    executable: str | None = Field(
        default=None, description="path of exabgp; default: the one installed beside us"
    )
    run_dir: RunDir | None = Field(
        default=None,
        description="where ExaBGP's rendered config and API socket live (made mode 0700; "
        "exabgp.conf inside is 0600); default: a new directory anycast-announcer-* in "
        "$TMPDIR (or /tmp), removed at exit",
    )
    restart_backoff_initial: Seconds = Field(
        default=0.5,
        description="seconds before a crashed ExaBGP is restarted; doubles per crash",
    )
    restart_backoff_max: Seconds = Field(
        default=30.0, description="the longest wait between restarts"
    )
    ack_timeout: Seconds = Field(
        default=5.0,
        description="seconds ExaBGP has to acknowledge a command; then it is restarted",
    )
    watchdog: Float = Field(
        default=5.0,
        description="seconds without a heartbeat from the sidecar after which ExaBGP's "
        f"API relay exits, so ExaBGP stops and the leaves drop our routes; 0 turns it "
        f"off, otherwise at least {WATCHDOG_MIN:g}",
    )

    @field_validator("watchdog")
    @classmethod
    def _watchdog_range(cls, value: float) -> float:
        # The heartbeat comes every watchdog/3 s; below the minimum, a garbage collection
        # or a reload of a large config on the event loop could trip it.
        if value != 0 and not WATCHDOG_MIN <= value <= 3600:
            raise ValueError(f"must be 0 (off) or between {WATCHDOG_MIN:g} and 3600 seconds")
        return value


class DetectionConfig(StrictModel):
    """The event sources that find failures without polling (see the services' switches)."""

    address_resync_interval: Seconds = Field(
        default=30.0,
        description="a full dump of local addresses as a backstop to the rtnetlink events",
    )
    systemd_bus: str = Field(
        default="/run/dbus/system_bus_socket",
        min_length=2,
        max_length=107,
        pattern=r"^/",
        description="the D-Bus socket systemd listens on, for services with systemd_unit",
    )
