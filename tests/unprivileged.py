"""Run the project as user nobody from wherever the clone is.

The venv, the clone and even the interpreter may live under a directory nobody cannot
traverse (Debian's /root is 0700, pyenv installs under it). A packaged install puts all
of it where nobody can read it, so the tests do the same: they copy the code and its
runtime dependencies into a world-readable directory and run them on an interpreter of
the same version whose path nobody can traverse.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.lablib import REPO_ROOT

AS_NOBODY = [
    "setpriv",
    "--reuid",
    "nobody",
    "--regid",
    "nogroup",
    "--clear-groups",
    "--inh-caps=-all",
    "--",
]

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "results")


@dataclass(frozen=True)
class PublicInstall:
    """The project copied where nobody can run it."""

    python: str
    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": f"{self.root / 'src'}:{self.root / 'site'}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }


def world_reachable(path: Path) -> bool:
    """Whether a user with no special rights can traverse to ``path`` and read or run it."""
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH))


def nobody_python() -> str:
    """An interpreter of this one's version (so compiled extensions load) nobody can run."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = getattr(sys, "_base_executable", sys.executable)
    candidates = [base, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if os.path.exists(candidate) and world_reachable(Path(candidate)):
            return str(Path(candidate).resolve())
    raise RuntimeError(
        f"no Python {version} that user nobody can reach (tried {', '.join(candidates)}): "
        f"install Debian's python{version}"
    )


def _runtime_distributions(name: str) -> list[metadata.Distribution]:
    """``name`` and everything it needs at run time (extras left out), installed here."""
    seen: dict[str, metadata.Distribution] = {}
    pending = [name]
    while pending:
        wanted = pending.pop()
        try:
            dist = metadata.distribution(wanted)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency for another platform or Python
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(seen.values())


def public_install(dest: Path) -> PublicInstall:
    """Copy the project (``anycast_announcer`` and ``tests``) and its runtime
    dependencies into ``dest``, which is made world-readable."""
    python = nobody_python()
    src, site = dest / "src", dest / "site"
    for package in ("anycast_announcer", "tests"):
        shutil.copytree(REPO_ROOT / package, src / package, ignore=_IGNORE)
    for dist in _runtime_distributions("anycast-announcer"):
        for file in dist.files or []:
            origin = Path(str(dist.locate_file(file))).resolve()
            # The editable project itself came from the clone above; skip what is not
            # inside site-packages (scripts in bin/, the editable finder's target).
            if file.parts[0] in ("..", "anycast_announcer") or file.suffix == ".pyc":
                continue
            if not origin.is_file():
                continue
            target = site / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
    for path in (dest, *dest.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return PublicInstall(python=python, root=dest)
