"""Every file in tests/configs/invalid is a realistic mistake the CLI must explain.

Each file's first line is ``# expect: <text>``: the error output must contain that text,
which always includes the field path (or the YAML position) the user has to look at.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from anycast_announcer.cli import EXIT_OK, EXIT_USAGE, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
INVALID = sorted((CONFIGS / "invalid").glob("*.yaml"))
VALID = sorted((CONFIGS / "valid").glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: '"
    return first.removeprefix("# expect: ")


def test_there_are_enough_invalid_examples() -> None:
    """The corpus covers many mistakes; an accidental glob miss would make this suite empty."""
    assert len(INVALID) >= 30
    assert len(VALID) >= 3


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_is_rejected_with_its_path(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config exits 2 and names the problem, each line prefixed with the file name."""
    assert main(["check-config", str(path)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert expectation(path) in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert all(line.startswith(f"{path}: ") for line in captured.err.splitlines())


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_config_passes(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The valid examples pass and say so on stdout."""
    assert main(["check-config", str(path)]) == EXIT_OK
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_real_command_exit_code_and_no_traceback() -> None:
    """As a separate process: exit status 2, the message on stderr, no traceback."""
    path = CONFIGS / "invalid" / "unknown-service.yaml"
    completed = subprocess.run(
        [sys.executable, "-m", "anycast_announcer", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == EXIT_USAGE
    assert expectation(path) in completed.stderr
    assert "Traceback" not in completed.stderr
