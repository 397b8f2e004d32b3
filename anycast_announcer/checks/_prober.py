"""The seam between the supervisor and the probes, and the object that owns their resources."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol, Self

import aiohttp

from anycast_announcer.checks import command, http, tcp
from anycast_announcer.checks._result import (
    SIDECAR_ERRNOS,
    ProbeCategory,
    ProbeResult,
    finish,
    shorten,
    sidecar_failure,
)
from anycast_announcer.checks.regex import RegexMatcher
from anycast_announcer.config import CommandCheck, HttpCheck, TcpCheck

__all__ = ["Probe", "Prober"]


class Probe(Protocol):
    """Anything that can probe a service; the supervisor takes a fake of it in unit tests."""

    async def probe(
        self,
        check: TcpCheck | HttpCheck | CommandCheck,
        timeout: float,
    ) -> ProbeResult:
        """Probe once, within ``timeout`` seconds; a failed service is a result, not an error."""
        ...


class Prober:
    """Runs probes of every type, sharing one HTTP session among them; use ``async with``.

    The session is created on the first HTTP probe (a sidecar with only TCP and command
    checks never opens one) and closed on exit; so are the ``body_regex`` workers.
    """

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._matcher: RegexMatcher | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the shared HTTP session and regex workers; probing later opens new ones."""
        session, self._session = self._session, None
        matcher, self._matcher = self._matcher, None
        if session is not None:
            await session.close()
        if matcher is not None:
            await matcher.aclose()

    async def probe(
        self,
        check: TcpCheck | HttpCheck | CommandCheck,
        timeout: float,
    ) -> ProbeResult:
        """Probe once with the module that matches ``check``'s type."""
        started = time.monotonic()
        try:
            match check:
                case TcpCheck():
                    return await tcp.probe(check, timeout)
                case HttpCheck():
                    return await http.probe(
                        check, timeout, self._http_session(), self._regex_matcher()
                    )
                case CommandCheck():
                    return await command.probe(check, timeout)
        except Exception as error:  # fail closed, see below
            # The probe modules turn every failure of the service into a result, so this is
            # a bug of ours. Reporting the service down (and the route withdrawn) is the safe
            # answer; letting it escape would take the supervisor down with it. A shortage
            # of ours (no memory, no descriptors) is the exception: no evidence either way.
            reason = "probe error: " + shorten(f"{type(error).__name__}: {error}")
            if _is_shortage(error):
                return sidecar_failure(started, error, reason)
            return finish(started, ok=False, reason=reason, category=ProbeCategory.OTHER)

    def _regex_matcher(self) -> RegexMatcher:
        if self._matcher is None:
            self._matcher = RegexMatcher()
        return self._matcher

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = http.new_session()
        return self._session


def _is_shortage(error: Exception) -> bool:
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, OSError) and error.errno in SIDECAR_ERRNOS
