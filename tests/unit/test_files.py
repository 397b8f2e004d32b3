"""Private files and directories: atomic, never through a planted symlink, never loose."""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from anycast_announcer.files import UnsafePathError, ensure_private_dir, write_private_file_atomic


@pytest.fixture(params=[0o000, 0o022, 0o077], ids=["umask000", "umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


class TestWritePrivateFileAtomic:
    def test_writes_with_the_mode_whatever_the_umask(self, tmp_path: Path, umask: int) -> None:
        target = tmp_path / "exabgp.conf"
        write_private_file_atomic(target, "neighbor x {}\n")
        assert target.read_text() == "neighbor x {}\n"
        assert mode(target) == 0o600

    def test_replaces_existing_content_and_leaves_no_temporary(self, tmp_path: Path) -> None:
        target = tmp_path / "state.json"
        target.write_text("old")
        target.chmod(0o644)
        write_private_file_atomic(target, b"new")
        assert target.read_bytes() == b"new"
        assert mode(target) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]

    def test_a_planted_symlink_is_replaced_not_followed(self, tmp_path: Path) -> None:
        """Writing through a symlink overwrote another file; now the link itself goes."""
        victim = tmp_path / "victim"
        victim.write_text("precious")
        target = tmp_path / "drain.json"
        target.symlink_to(victim)
        write_private_file_atomic(target, "state")
        assert victim.read_text() == "precious"
        assert not target.is_symlink()
        assert target.read_text() == "state"

    def test_the_old_fixed_temporary_name_is_not_used(self, tmp_path: Path) -> None:
        """``<file>.tmp`` was predictable: a symlink planted there was written through."""
        victim = tmp_path / "victim"
        victim.write_text("precious")
        target = tmp_path / "drain.json"
        (tmp_path / "drain.json.tmp").symlink_to(victim)
        write_private_file_atomic(target, "state")
        assert victim.read_text() == "precious"
        assert target.read_text() == "state"

    def test_failure_leaves_nothing_behind(self, tmp_path: Path) -> None:
        target = tmp_path / "dir-not-file"
        target.mkdir()
        (target / "inside").write_text("x")  # rename over a non-empty directory fails
        with pytest.raises(OSError, match=r"Is a directory|Directory not empty"):
            write_private_file_atomic(target, "data")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dir-not-file"]

    def test_missing_directory_is_an_os_error(self, tmp_path: Path) -> None:
        with pytest.raises(FileNotFoundError):
            write_private_file_atomic(tmp_path / "no" / "such" / "file", "x")

    def test_other_mode(self, tmp_path: Path) -> None:
        target = tmp_path / "public"
        write_private_file_atomic(target, "x", mode=0o644)
        assert mode(target) == 0o644


class TestEnsurePrivateDir:
    def test_creates_0700_whatever_the_umask(self, tmp_path: Path, umask: int) -> None:
        path = ensure_private_dir(tmp_path / "a" / "b" / "run")
        assert path.is_dir()
        assert mode(path) == 0o700

    def test_tightens_a_loose_directory(self, tmp_path: Path) -> None:
        """A configured run_dir of 0777 stayed 0777; now it is made 0700."""
        loose = tmp_path / "run"
        loose.mkdir()
        loose.chmod(0o777)
        ensure_private_dir(loose)
        assert mode(loose) == 0o700

    def test_refuses_a_symlink(self, tmp_path: Path) -> None:
        real = tmp_path / "real"
        real.mkdir(mode=0o700)
        link = tmp_path / "link"
        link.symlink_to(real)
        with pytest.raises(UnsafePathError, match="symbolic link"):
            ensure_private_dir(link)

    def test_refuses_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "file"
        path.write_text("")
        with pytest.raises(UnsafePathError, match="not a directory"):
            ensure_private_dir(path)

    @pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
    def test_refuses_a_directory_of_another_user(self, tmp_path: Path) -> None:
        other = tmp_path / "theirs"
        other.mkdir(mode=0o700)
        nobody = pwd.getpwnam("nobody")
        os.chown(other, nobody.pw_uid, nobody.pw_gid)
        with pytest.raises(UnsafePathError, match=f"owned by uid {nobody.pw_uid}"):
            ensure_private_dir(other)
        assert mode(other) == 0o700
