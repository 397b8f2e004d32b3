"""The operator surface over HTTP: status API, status page, metrics, drain and reload.

``create_app`` builds the aiohttp application on top of the ``Control`` seam,
``start_http`` serves it, ``load_token`` reads the bearer token for the mutating
endpoints. The aiohttp parts load on first use, so the CLI can import ``load_token``
without paying for aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from anycast_announcer.http.token import TokenFileError, load_token

if TYPE_CHECKING:
    from anycast_announcer.http.app import create_app
    from anycast_announcer.http.server import serving, start_http

__all__ = ["TokenFileError", "create_app", "load_token", "serving", "start_http"]

_LAZY = {
    "create_app": "anycast_announcer.http.app",
    "serving": "anycast_announcer.http.server",
    "start_http": "anycast_announcer.http.server",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
