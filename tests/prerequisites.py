"""What a test needs from the host, and one rule for when it is missing.

A developer without root or without a tool can still run what their machine allows, so a
missing prerequisite skips the test; but CI (``CI`` set) must never count a test it could
not run as anything but a failure.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(problem: str) -> NoReturn:
    """Skip the calling test because of ``problem``; under CI, fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{problem}; CI must run this test")
    pytest.skip(problem)


def require_command(name: str, install_hint: str) -> str:
    """The path of the program ``name``, or :func:`unavailable` naming how to install it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed: {install_hint}")
    return path
