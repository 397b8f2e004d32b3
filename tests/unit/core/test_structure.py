"""The core's shape: importable without the shell's libraries, its own imports pure."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import anycast_announcer.core

CORE = Path(anycast_announcer.core.__file__).parent
SHELL_ONLY = ("aiohttp", "asyncio", "structlog", "anycast_announcer.checks", "pyroute2")
"""What no core module imports: the event loop, the probes, logging set-up, netlink."""


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
    return names


def test_importing_the_core_does_not_import_aiohttp() -> None:
    """Regression: core.inputs -> checks/__init__ -> _prober pulled in aiohttp."""
    code = (
        "import sys, anycast_announcer.core; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp' "
        "or m.startswith('anycast_announcer.checks')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_no_core_module_imports_the_shells_libraries() -> None:
    found = {
        path.name: sorted(
            name
            for name in _imports(path)
            if any(name == banned or name.startswith(banned + ".") for banned in SHELL_ONLY)
        )
        for path in sorted(CORE.glob("*.py"))
    }
    assert {name: banned for name, banned in found.items() if banned} == {}


def test_sidecar_and_snapshot_do_not_import_each_other() -> None:
    assert "anycast_announcer.core.sidecar" not in _imports(CORE / "snapshot.py")
    assert "anycast_announcer.core.snapshot" not in _imports(CORE / "records.py")
