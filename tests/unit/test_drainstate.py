"""The drain state file: saved atomically, loaded tolerantly, bad files set aside."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from anycast_announcer.drainstate import PersistedDrain, load_drain_state, save_drain_state

NOW = 1_767_225_600.0


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    drains = [
        PersistedDrain("10.255.0.1/32", "kernel upgrade", NOW),
        PersistedDrain("fd00:255::1/128", "maintenance", NOW + 1.5),
    ]
    save_drain_state(path, drains)
    assert sorted(load_drain_state(path), key=lambda d: d.prefix) == drains
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reads_what_earlier_releases_wrote(tmp_path: Path) -> None:
    """The format is the one app.py wrote before: an upgrade keeps its drains."""
    path = tmp_path / "drain.json"
    path.write_text(
        json.dumps({"drains": {"10.255.0.1/32": {"reason": "r", "started_at": NOW}}}, indent=1)
    )
    assert load_drain_state(path) == [PersistedDrain("10.255.0.1/32", "r", NOW)]


def test_missing_file_is_no_drains(tmp_path: Path) -> None:
    with capture_logs() as logs:
        assert load_drain_state(tmp_path / "absent.json") == []
    assert logs == []


def test_empty_list_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    save_drain_state(path, [])
    assert load_drain_state(path) == []


BAD_DOCUMENTS: list[tuple[str, str]] = [
    ("", "empty"),
    ("\n  \n", "empty"),
    ("{not json", "not JSON"),
    ("[]", "no 'drains' mapping"),
    ('{"drains": []}', "no 'drains' mapping"),
    ('{"drains": {"10.255.0.1/32": "r"}}', "not a mapping"),
    ('{"drains": {"not-a-prefix": {"reason": "r", "started_at": 1}}}', "not an IPv4 or IPv6"),
    ('{"drains": {"10.255.0.1/32": {"reason": 7, "started_at": 1}}}', ".reason"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r", "started_at": "yesterday"}}}', "started_at"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r", "started_at": NaN}}}', "not JSON"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r", "started_at": 1e400}}}', "started_at"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r", "started_at": -5}}}', "started_at"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r", "started_at": 9e15}}}', "started_at"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r", "started_at": true}}}', "started_at"),
    ('{"drains": {"10.255.0.1/32": {"reason": "r"}}}', "started_at"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),
]


@pytest.mark.parametrize(("text", "why"), BAD_DOCUMENTS, ids=[w for _, w in BAD_DOCUMENTS])
def test_bad_file_is_logged_set_aside_and_ignored(tmp_path: Path, text: str, why: str) -> None:
    """An empty or malformed file (a bad timestamp crashed the start-up) means no drains."""
    path = tmp_path / "drain.json"
    path.write_text(text)
    with capture_logs() as logs:
        assert load_drain_state(path, now=NOW) == []
    [event] = logs
    assert event["event"] == "drain_state_unreadable"
    assert why in event["error"]
    assert event["moved_to"] == f"{path}.bad-{int(NOW)}"
    assert not path.exists()
    assert Path(f"{path}.bad-{int(NOW)}").read_text() == text


def test_a_symlink_is_not_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    save_drain_state(elsewhere, [PersistedDrain("10.255.0.1/32", "r", NOW)])
    path = tmp_path / "drain.json"
    path.symlink_to(elsewhere)
    with capture_logs() as logs:
        assert load_drain_state(path, now=NOW) == []
    assert logs[0]["error"] == "is a symbolic link"
    assert elsewhere.exists()


def test_too_large(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    path.write_text(" " * (2 * 1024 * 1024))
    with capture_logs() as logs:
        assert load_drain_state(path, now=NOW) == []
    assert "larger than" in logs[0]["error"]


def test_save_replaces_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    path = tmp_path / "drain.json"
    path.symlink_to(victim)
    save_drain_state(path, [PersistedDrain("10.255.0.1/32", "r", NOW)])
    assert victim.read_text() == "precious"
    assert load_drain_state(path)[0].prefix == "10.255.0.1/32"


def test_prefixes_are_normalised_and_reasons_made_printable(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    document: dict[str, Any] = {
        "drains": {"FD00:255:0::1/128": {"reason": "bad\u2028line\x1b[31m\u202e", "started_at": 1}}
    }
    path.write_text(json.dumps(document))
    [drain] = load_drain_state(path)
    assert drain == PersistedDrain("fd00:255::1/128", "bad?line?[31m?", 1.0)


@pytest.mark.skipif(os.geteuid() != 0, reason="root reads anything; needs an unreadable file")
def test_unreadable_directory_entry_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "drain.json"
    path.mkdir()
    with capture_logs() as logs:
        assert load_drain_state(path, now=NOW) == []
    assert logs[0]["error"] == "not a regular file"
