"""The token file: private, ours, long enough, in safe directories, or refused with its name."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from anycast_announcer.http import TokenFileError, load_token
from anycast_announcer.http.token import TOKEN_MIN_LENGTH

GOOD = "tok-0123456789abcdef"
NOBODY = pwd.getpwnam("nobody")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


class TestLoadToken:
    def test_private_file_is_read_and_stripped(self, tmp_path: Path) -> None:
        """Mode 0600 (or 0400) is accepted; the trailing newline of `echo` is stripped."""
        assert load_token(_write(tmp_path / "t", f"  {GOOD}\n", 0o600)) == GOOD
        assert load_token(_write(tmp_path / "r", f"{GOOD}x\n", 0o400)) == GOOD + "x"

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
    def test_group_or_world_readable_is_refused(self, tmp_path: Path, mode: int) -> None:
        """Anyone else able to read the token could drain the server: refuse, say how to fix."""
        path = _write(tmp_path / "token", f"{GOOD}\n", mode)
        with pytest.raises(TokenFileError) as caught:
            load_token(path)
        assert str(path) in str(caught.value)
        assert f"{mode:04o}" in str(caught.value)
        assert "chmod 600" in str(caught.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file names the file."""
        with pytest.raises(TokenFileError, match=r"token file .*/nope: not found"):
            load_token(tmp_path / "nope")

    @pytest.mark.parametrize("text", ["", "\n", "   \n\t"])
    def test_empty_file(self, tmp_path: Path, text: str) -> None:
        """An empty token would match an empty header; it is a mistake."""
        with pytest.raises(TokenFileError, match="empty"):
            load_token(_write(tmp_path / "token", text, 0o600))

    def test_directory_is_refused(self, tmp_path: Path) -> None:
        """A directory is not a token file."""
        directory = tmp_path / "dir"
        directory.mkdir(mode=0o700)
        with pytest.raises(TokenFileError, match="not a regular file"):
            load_token(directory)

    def test_fifo_is_refused_without_blocking(self, tmp_path: Path) -> None:
        """A FIFO would block a reader forever; it is refused at once."""
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo, 0o600)
        with pytest.raises(TokenFileError, match="not a regular file"):
            load_token(fifo)

    def test_symlink_is_refused(self, tmp_path: Path) -> None:
        """A symlink could point anywhere; name the real file instead."""
        target = _write(tmp_path / "target", f"{GOOD}\n", 0o600)
        link = tmp_path / "link"
        link.symlink_to(target)
        with pytest.raises(TokenFileError, match="symbolic link"):
            load_token(link)

    def test_token_with_inner_blanks_is_refused(self, tmp_path: Path) -> None:
        """A bearer token cannot hold blanks: two lines are a mistake, not one token."""
        with pytest.raises(TokenFileError, match="blanks"):
            load_token(_write(tmp_path / "token", f"{GOOD}\n{GOOD}\n", 0o600))

    def test_short_token_is_refused(self, tmp_path: Path) -> None:
        """A short token can be guessed by a local process trying them all."""
        short = "x" * (TOKEN_MIN_LENGTH - 1)
        with pytest.raises(TokenFileError, match=f"{TOKEN_MIN_LENGTH - 1} characters, fewer"):
            load_token(_write(tmp_path / "token", short, 0o600))
        assert load_token(_write(tmp_path / "ok", short + "y", 0o600)) == short + "y"


class TestOwnerAndDirectories:
    @needs_root
    def test_file_of_another_user_is_refused_by_the_sidecar(self, tmp_path: Path) -> None:
        path = _write(tmp_path / "token", GOOD, 0o600)
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
        with pytest.raises(TokenFileError, match=f"owned by uid {NOBODY.pw_uid}"):
            load_token(path, owner=os.geteuid())
        assert load_token(path) == GOOD  # the CLI (root, say) may read the sidecar's file

    def test_own_file_passes_the_owner_check(self, tmp_path: Path) -> None:
        assert load_token(_write(tmp_path / "token", GOOD, 0o600), owner=os.geteuid()) == GOOD

    @pytest.mark.parametrize("mode", [0o770, 0o777, 0o722, 0o757])
    def test_writable_directory_above_is_refused(self, tmp_path: Path, mode: int) -> None:
        """Whoever can write a directory above the file can swap the token."""
        shared = tmp_path / "shared"
        inner = shared / "inner"
        inner.mkdir(parents=True)
        path = _write(inner / "token", GOOD, 0o600)
        shared.chmod(mode)
        with pytest.raises(TokenFileError, match=f"directory {shared} is writable") as caught:
            load_token(path)
        assert "chmod go-w" in str(caught.value)

    def test_sticky_directory_like_tmp_is_accepted(self, tmp_path: Path) -> None:
        sticky = tmp_path / "sticky"
        sticky.mkdir()
        sticky.chmod(0o1777)
        inner = sticky / "mine"
        inner.mkdir(mode=0o700)
        assert load_token(_write(inner / "token", GOOD, 0o600)) == GOOD

    @needs_root
    def test_directory_of_another_user_is_refused(self, tmp_path: Path) -> None:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o755)
        path = _write(theirs / "token", GOOD, 0o600)
        os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)
        with pytest.raises(TokenFileError, match=f"belongs to uid {NOBODY.pw_uid}"):
            load_token(path)

    def test_symlinked_directory_is_checked_where_it_leads(self, tmp_path: Path) -> None:
        """/etc/x -> /srv/writable: the real directories count, not only the link's."""
        writable = tmp_path / "writable"
        writable.mkdir()
        _write(writable / "token", GOOD, 0o600)
        writable.chmod(0o777)
        safe = tmp_path / "safe"
        safe.mkdir(mode=0o755)
        (safe / "link").symlink_to(writable)
        with pytest.raises(TokenFileError, match=r"directory .*/(link|writable) is writable"):
            load_token(safe / "link" / "token")
