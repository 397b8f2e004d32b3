"""A missing prerequisite skips a test on a developer's machine and fails it in CI."""

from __future__ import annotations

import pytest

from tests.prerequisites import require_command, unavailable


def test_a_missing_prerequisite_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        unavailable("no widget")


def test_a_missing_prerequisite_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no widget; CI must run this test"):
        unavailable("no widget")


def test_a_missing_command_names_itself_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="iperf3 is not installed: make test-deps"):
        require_command("iperf3", "make test-deps")


def test_a_present_command_is_found_by_path() -> None:
    assert require_command("sh", "any Debian").endswith("/sh")
