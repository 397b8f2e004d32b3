"""Running Prometheus's ``promtool`` (Debian package ``prometheus``) from tests.

from tests.promtool import promtool

result = promtool("check", "rules", "rules.yml")
assert result.returncode == 0, result.stdout + result.stderr

Without promtool a test is skipped on a developer's machine and fails under CI (``CI``
set): CI must never count a check it could not run as passed.
"""

from __future__ import annotations

import subprocess

from tests.prerequisites import require_command

__all__ = ["promtool", "promtool_path"]


def promtool_path() -> str:
    """Where promtool is; skips the test without it, or fails it under CI."""
    return require_command("promtool", "`make test-deps` installs Debian's prometheus package")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``promtool args...`` and capture its output (it is not checked here)."""
    return subprocess.run(
        [promtool_path(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
