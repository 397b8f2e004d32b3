"""The version has one source, the CLI prints it, and the changelog knows it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from anycast_announcer import __version__

ROOT = Path(__file__).resolve().parents[2]
SEMVER = re.compile(r"\d+\.\d+\.\d+")


def test_the_version_is_semver_and_in_the_changelog() -> None:
    assert SEMVER.fullmatch(__version__), __version__
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M)
    assert released, "CHANGELOG.md has no released section"
    assert released[0] == __version__, "the newest released section must be this version"
    assert "## [Unreleased]" in changelog


def test_pyproject_takes_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "a second copy of the version"
    assert pyproject["project"]["dynamic"] == ["version"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "anycast_announcer.__version__"}


def test_cli_prints_the_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "anycast_announcer", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.strip() == f"anycast-announcer {__version__}"
