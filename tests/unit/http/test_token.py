"""The token file: private, regular, non-empty, or refused with the file's name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anycast_announcer.http import TokenFileError, load_token


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


class TestLoadToken:
    def test_private_file_is_read_and_stripped(self, tmp_path: Path) -> None:
        """Mode 0600 (or 0400) is accepted; the trailing newline of `echo` is stripped."""
        assert load_token(_write(tmp_path / "t", "  abc123\n", 0o600)) == "abc123"
        assert load_token(_write(tmp_path / "r", "xyz\n", 0o400)) == "xyz"

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
    def test_group_or_world_readable_is_refused(self, tmp_path: Path, mode: int) -> None:
        """Anyone else able to read the token could drain the server: refuse, say how to fix."""
        path = _write(tmp_path / "token", "abc123\n", mode)
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
        target = _write(tmp_path / "target", "abc\n", 0o600)
        link = tmp_path / "link"
        link.symlink_to(target)
        with pytest.raises(TokenFileError, match="symbolic link"):
            load_token(link)

    def test_token_with_inner_blanks_is_refused(self, tmp_path: Path) -> None:
        """A bearer token cannot hold blanks: two lines are a mistake, not one token."""
        with pytest.raises(TokenFileError, match="blanks"):
            load_token(_write(tmp_path / "token", "abc\ndef\n", 0o600))
