"""HTTP(S) probe: healthy when a GET answers with an expected status (and matching body).

Redirects are not followed: a 302 is a status like any other, so a service that starts
redirecting its health URL to a login page is noticed instead of being reported healthy.
Connections are never kept alive (``force_close``): a pooled connection to a process that
has since died would otherwise turn the first probe after its death into a confusing
"server disconnected", and a fresh connection each time is what a new client sees.

``body_regex`` is searched by a worker process (``checks.regex``), never on the event
loop; the search counts against the probe's timeout, and a timeout during the search is
reported as such ("timeout after 0.5s in body_regex").
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import time

import aiohttp

from anycast_announcer import __version__
from anycast_announcer.checks._result import (
    SIDECAR_ERRNOS,
    ProbeCategory,
    ProbeResult,
    finish,
    os_error_category,
    os_error_reason,
    os_error_result,
    shorten,
    sidecar_failure,
    timeout_reason,
)
from anycast_announcer.checks.regex import RegexError, RegexMatcher
from anycast_announcer.config import HttpCheck

__all__ = ["BODY_READ_MAX", "new_session", "probe"]

BODY_READ_MAX = 64 * 1024
"""Bytes of the body searched by ``body_regex``; the rest is never read."""

_USER_AGENT = f"anycast-announcer/{__version__} (health probe)"


def new_session() -> aiohttp.ClientSession:
    """A session fit to be shared by every HTTP probe of a sidecar; call inside a running loop.

    No connection limit (the number of services bounds concurrency, and a queue in front of
    the connector would turn into false timeouts), no keep-alive, no cookies carried from
    one service to the next, no proxies from the environment, and no timeout of its own:
    each probe brings its deadline.
    """
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": _USER_AGENT},
        trust_env=False,
        auto_decompress=True,
    )


class _Phase(enum.Enum):
    """Where a probe was when its timeout struck."""

    REQUEST = "request"
    WAITING_FOR_WORKER = "waiting_for_worker"
    SEARCHING = "searching"


async def probe(
    check: HttpCheck,
    timeout: float,
    session: aiohttp.ClientSession | None = None,
    matcher: RegexMatcher | None = None,
) -> ProbeResult:
    """GET ``check.url`` within ``timeout`` seconds, on ``session`` or a session of its own.

    ``matcher`` runs ``body_regex``; without one, a matcher of this probe's own is used.
    """
    if session is None:
        async with new_session() as own_session:
            return await probe(check, timeout, own_session, matcher)
    if matcher is None and check.body_regex is not None:
        own_matcher = RegexMatcher(workers=1)
        try:
            return await _probe(check, timeout, session, own_matcher)
        finally:
            await own_matcher.aclose()
    return await _probe(check, timeout, session, matcher or RegexMatcher(workers=1))


async def _probe(
    check: HttpCheck,
    timeout: float,
    session: aiohttp.ClientSession,
    matcher: RegexMatcher,
) -> ProbeResult:
    started = time.monotonic()
    phase = [_Phase.REQUEST]
    try:
        async with asyncio.timeout(timeout) as deadline:
            return await _get(check, session, matcher, started, phase)
    except TimeoutError:
        if deadline.expired():
            return _timed_out(started, timeout, phase[0])
        # aiohttp's own timeouts subclass TimeoutError; we set none, but stay truthful.
        return finish(started, ok=False, reason="timed out", category=ProbeCategory.TIMEOUT)
    except aiohttp.ClientError as error:
        return _client_error_result(started, error)
    except ssl.SSLError as error:
        return finish(started, ok=False, reason=_ssl_reason(error), category=ProbeCategory.TLS)
    except OSError as error:
        return os_error_result(started, error)
    except RuntimeError as error:  # a thread or process we need could not be started
        return sidecar_failure(started, error)
    except ValueError as error:
        # aiohttp refuses to send some header values (a newline in host_header, say).
        return finish(started, ok=False, reason=f"invalid request: {shorten(str(error))}")


def _timed_out(started: float, timeout: float, phase: _Phase) -> ProbeResult:
    if phase is _Phase.WAITING_FOR_WORKER:
        # Every regex worker was busy (or one could not start in time): our shortage.
        return finish(
            started,
            ok=False,
            reason=f"sidecar cannot probe: no regex worker within {timeout:g}s",
            category=ProbeCategory.SIDECAR,
        )
    reason = timeout_reason(timeout)
    if phase is _Phase.SEARCHING:
        reason += " in body_regex"
    return finish(started, ok=False, reason=reason, category=ProbeCategory.TIMEOUT)


async def _get(
    check: HttpCheck,
    session: aiohttp.ClientSession,
    matcher: RegexMatcher,
    started: float,
    phase: list[_Phase],
) -> ProbeResult:
    headers = {"Host": check.host_header} if check.host_header is not None else None
    # ssl=True verifies with the default context; False turns verification off entirely.
    async with session.get(
        check.url, headers=headers, allow_redirects=False, ssl=check.verify_tls
    ) as response:
        status = f"http status {response.status}"
        if response.status not in check.expected_status:
            return finish(started, ok=False, reason=status, category=ProbeCategory.HTTP_STATUS)
        if check.body_regex is None:
            return finish(started, ok=True, reason=status)
        body = await _read_head(response, BODY_READ_MAX)
        text = body.decode(_charset(response), errors="replace")
    phase[0] = _Phase.WAITING_FOR_WORKER
    async with matcher.worker() as worker:
        phase[0] = _Phase.SEARCHING
        try:
            found = await worker.search(check.body_regex, text)
        except RegexError as error:
            return finish(started, ok=False, reason=f"body_regex: {shorten(str(error))}")
    if not found:
        return finish(
            started, ok=False, reason="body did not match", category=ProbeCategory.BODY_MISMATCH
        )
    return finish(started, ok=True, reason=status)


async def _read_head(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of the body."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await response.content.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _charset(response: aiohttp.ClientResponse) -> str:
    charset = response.charset or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def _client_error_result(started: float, error: aiohttp.ClientError) -> ProbeResult:
    os_error = getattr(error, "os_error", None)
    if isinstance(error, aiohttp.ClientOSError) and isinstance(os_error, OSError):
        if os_error.errno in SIDECAR_ERRNOS:
            return sidecar_failure(started, os_error)
    elif isinstance(error, aiohttp.ClientOSError) and error.errno in SIDECAR_ERRNOS:
        return sidecar_failure(started, error)
    return finish(
        started,
        ok=False,
        reason=_client_error_reason(error),
        category=_client_error_category(error),
    )


def _client_error_category(error: aiohttp.ClientError) -> ProbeCategory:
    if isinstance(
        error,
        aiohttp.ClientConnectorCertificateError | aiohttp.ClientConnectorSSLError,
    ):
        return ProbeCategory.TLS
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return ProbeCategory.UNREACHABLE
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ssl.SSLError):
            return ProbeCategory.TLS
        return os_error_category(error.os_error)
    if isinstance(error, aiohttp.ClientOSError):
        return os_error_category(error)
    return ProbeCategory.OTHER


def _client_error_reason(error: aiohttp.ClientError) -> str:  # noqa: PLR0911  # one answer per aiohttp error type, most specific first
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        certificate_error = error.certificate_error
        if isinstance(certificate_error, ssl.SSLCertVerificationError):
            detail = certificate_error.verify_message or certificate_error.reason or "invalid"
            return f"tls: {shorten(detail)}"
        return _ssl_reason(certificate_error)
    if isinstance(error, aiohttp.ClientConnectorSSLError):
        return _ssl_reason(error.os_error)
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        detail = error.os_error.strerror or str(error.os_error)
        return f"cannot resolve {error.host}: {shorten(detail.lower())}"
    if isinstance(error, aiohttp.ClientConnectorError):
        if isinstance(error.os_error, ssl.SSLError):
            return _ssl_reason(error.os_error)
        return os_error_reason(error.os_error)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(error, aiohttp.ClientResponseError):
        return f"bad http response: {shorten(error.message or type(error).__name__)}"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "bad http body"
    if isinstance(error, aiohttp.InvalidURL):
        return f"invalid url: {shorten(str(error))}"
    if isinstance(error, aiohttp.ClientOSError):
        return os_error_reason(error)
    return f"http error: {shorten(str(error) or type(error).__name__)}"


def _ssl_reason(error: BaseException) -> str:
    # ssl.SSLError.reason is OpenSSL's symbol ("WRONG_VERSION_NUMBER"): stable and short.
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason:
        return f"tls: {reason.lower().replace('_', ' ')}"
    return f"tls: {shorten(str(error) or type(error).__name__)}"
