"""The aiohttp application: routes, authentication, request validation, error shape.

Handlers only read snapshots (``Control.status()``) and forward requests to the
supervisor (``Control.drain()`` and friends); they own no state. Every answer that is not
a success is JSON ``{"error": "..."}``, including aiohttp's own 404/405/413, and nothing a
client sends can produce a 500 or a traceback: an unexpected exception is logged and
answered with a bare "internal error".

Status codes of the mutating endpoints: 401 bad or missing token, 403 no token
configured, 400 malformed body (not JSON, not UTF-8), 415 a body that is not JSON,
422 well-formed JSON with a wrong field, 413 too large, and 409 when the supervisor
refuses (``ControlResult.ok`` False: unknown prefix, invalid config on reload).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ValidationError

from anycast_announcer.historymodels import WINDOWS, HistoryWindow
from anycast_announcer.http.models import (
    Accepted,
    DrainRequest,
    ErrorAnswer,
    HealthAnswer,
    ReadyAnswer,
    Refused,
    ReloadRequest,
    UndrainRequest,
    json_kind,
)
from anycast_announcer.http.openapi import openapi_document
from anycast_announcer.http.page import CONTENT_SECURITY_POLICY, render_page
from anycast_announcer.http.token import TokenKeeper
from anycast_announcer.metrics import Metrics
from anycast_announcer.status import Control, ControlResult

__all__ = ["CONTROL", "METRICS", "SETTINGS", "HttpSettings", "create_app"]

log = structlog.get_logger("anycast_announcer.http")

NO_TOKEN_MESSAGE = "no token configured (http.token_file)"  # noqa: S105  # a message, not a secret
_Body = TypeVar("_Body", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What the handlers need besides the control seam and the metrics."""

    token: Callable[[], str | None]
    """The token in force (it changes when a reload re-reads the token file)."""
    max_body: int
    openapi: bytes


CONTROL = web.AppKey[Control]("control")
METRICS = web.AppKey("metrics", Metrics)
SETTINGS = web.AppKey("settings", HttpSettings)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A client error with its status code; turned into JSON by the middleware."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _json(
    answer: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=answer.model_dump_json(exclude_none=True).encode("utf-8"),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The one shape of every error: ``{"error": message}``."""
    return _json(ErrorAnswer(error=message), status=status, headers=headers)


def _http_exception_message(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no such endpoint: {request.path} (see /openapi.json)"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"request body too large (limit {request.app[SETTINGS].max_body} bytes)"
    return exc.reason


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(error.status, error.message, error.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # Keep Allow (405) and the like; the body and its type are ours.
        headers = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() not in {"content-type", "content-length"}
        }
        return error_response(exc.status, _http_exception_message(request, exc), headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("http_handler_failed", method=request.method, path=request.path)
        return error_response(500, "internal error; see the sidecar's log")


# -- read-only endpoints -------------------------------------------------------------


async def _healthz(request: web.Request) -> web.Response:
    # Answering at all proves the event loop runs; ExaBGP is the other half.
    try:
        running = request.app[CONTROL].status().exabgp.running
    except Exception:
        log.exception("http_status_snapshot_failed")
        return _json(HealthAnswer(status="unhealthy", error="cannot take a status snapshot"), 503)
    if not running:
        return _json(HealthAnswer(status="unhealthy", error="exabgp is not running"), 503)
    return _json(HealthAnswer(status="ok"))


async def _readyz(request: web.Request) -> web.Response:
    if request.app[CONTROL].ready():
        return _json(ReadyAnswer(status="ready"))
    return _json(
        ReadyAnswer(
            status="not_ready",
            error="exabgp not running, first probe round not done, or a sidecar fault "
            "(see /status)",
        ),
        503,
    )


async def _status(request: web.Request) -> web.Response:
    # Not exclude_none: a null field in /status says "none", and scripts read it.
    body = request.app[CONTROL].status().model_dump_json()
    return web.Response(body=body.encode(), content_type="application/json", charset="utf-8")


def _window(request: web.Request) -> HistoryWindow:
    """The ``window`` query parameter: the last hour (the default) or day."""
    value = request.query.get("window", "hour")
    for window in WINDOWS:
        if value == window:
            return window
    allowed = " or ".join(repr(window) for window in WINDOWS)
    raise ApiError(400, f"window: must be {allowed} (got {value[:32]!r})")


async def _history(request: web.Request) -> web.Response:
    body = request.app[CONTROL].history(_window(request)).model_dump_json()
    return web.Response(body=body.encode(), content_type="application/json", charset="utf-8")


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})


async def _page(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    window = _window(request)
    status, history = control.status(), control.history(window)
    # Snapshots are taken here, by the loop that owns the state; drawing them (tens of
    # ms for fifty services' sparklines) reads only frozen models, so it runs off the loop.
    page = await asyncio.to_thread(render_page, status, time.time(), history)
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[SETTINGS].openapi, content_type="application/json", charset="utf-8"
    )


# -- authentication and request bodies ---------------------------------------------


def _authorize(request: web.Request) -> None:
    """Raise 403 when no token is configured, 401 unless the request presents it."""
    token = request.app[SETTINGS].token()
    if token is None:
        raise ApiError(403, NO_TOKEN_MESSAGE)
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401,
            "missing bearer token (send 'Authorization: Bearer <token>')",
            {hdrs.WWW_AUTHENTICATE: 'Bearer realm="anycast-announcer"'},
        )
    # Bytes, because compare_digest refuses non-ASCII str; a wrong token may hold anything.
    if not hmac.compare_digest(presented.strip().encode("utf-8", "replace"), token.encode("utf-8")):
        raise ApiError(
            401,
            "invalid bearer token",
            {hdrs.WWW_AUTHENTICATE: 'Bearer realm="anycast-announcer", error="invalid_token"'},
        )


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: web.Request, model: type[_Body]) -> _Body:
    """The body validated by ``model``; no body is ``{}``."""
    raw = await request.read()  # raises 413 above client_max_size
    if not raw:
        return model.model_validate({})
    if request.content_type != "application/json" and not request.content_type.endswith("+json"):
        raise ApiError(
            415,
            f"the body must be application/json (got {request.content_type}); "
            "add 'Content-Type: application/json'",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 text") from None
    try:
        data = json.loads(
            text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant
        )
    except json.JSONDecodeError as error:
        raise ApiError(
            400, f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except ValueError as error:
        raise ApiError(400, f"invalid JSON: {error}") from None
    except RecursionError:
        raise ApiError(400, "invalid JSON: nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(422, _first_problem(error)) from None


def _first_problem(error: ValidationError) -> str:
    """The first problem, in the worded form the models' validators give it."""
    item = error.errors(include_url=False)[0]
    message = str(item["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in item["loc"])
    if item["type"] == "value_error" or not where:
        return message
    shown = item.get("input")
    return f"{where}: {message} (got {json_kind(shown)})"


def _control_response(result: ControlResult) -> web.Response:
    if not result.ok:
        return _json(Refused(error=result.message, prefixes=list(result.prefixes)), 409)
    return _json(Accepted(message=result.message, prefixes=list(result.prefixes)))


# -- mutating endpoints ------------------------------------------------------------


async def _drain(request: web.Request) -> web.Response:
    _authorize(request)
    body = await _json_body(request, DrainRequest)
    log.info(
        "http_drain_requested", prefixes=body.prefixes, reason=body.reason, remote=request.remote
    )
    return _control_response(await request.app[CONTROL].drain(body.prefixes, body.reason))


async def _undrain(request: web.Request) -> web.Response:
    _authorize(request)
    body = await _json_body(request, UndrainRequest)
    log.info("http_undrain_requested", prefixes=body.prefixes, remote=request.remote)
    return _control_response(await request.app[CONTROL].undrain(body.prefixes))


async def _reload(request: web.Request) -> web.Response:
    _authorize(request)
    await _json_body(request, ReloadRequest)
    log.info("http_reload_requested", remote=request.remote)
    return _control_response(await request.app[CONTROL].reload())


def create_app(
    control: Control,
    metrics: Metrics,
    *,
    token: str | TokenKeeper | None,
    max_body: int = 64 * 1024,
    middlewares: Sequence[Middleware] = (),
) -> web.Application:
    """The status API and page; no token disables the mutating endpoints (403).

    ``token`` is a fixed token, or the sidecar's ``TokenKeeper`` whose token a reload
    may replace.

    ``middlewares`` run inside the error middleware, after it (Host check, connection
    bookkeeping: see ``http.server.serving``).
    """
    if max_body < 1:
        raise ValueError(f"max_body must be positive, got {max_body}")
    app = web.Application(middlewares=[_errors_as_json, *middlewares], client_max_size=max_body)
    app[CONTROL] = control
    app[METRICS] = metrics
    app[SETTINGS] = HttpSettings(
        token=(lambda: token.current) if isinstance(token, TokenKeeper) else (lambda: token),
        max_body=max_body,
        openapi=json.dumps(openapi_document(), indent=2).encode("utf-8"),
    )
    # HEAD is left out on purpose: every route is in the OpenAPI document, and a route
    # that is not there does not exist.
    app.router.add_get("/", _page, allow_head=False)
    app.router.add_get("/healthz", _healthz, allow_head=False)
    app.router.add_get("/readyz", _readyz, allow_head=False)
    app.router.add_get("/status", _status, allow_head=False)
    app.router.add_get("/history", _history, allow_head=False)
    app.router.add_get("/metrics", _metrics, allow_head=False)
    app.router.add_get("/openapi.json", _openapi, allow_head=False)
    app.router.add_post("/drain", _drain)
    app.router.add_post("/undrain", _undrain)
    app.router.add_post("/reload", _reload)
    return app
