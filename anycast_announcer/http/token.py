"""The bearer token that guards the mutating endpoints, read from a private file.

The file must be a regular file (not a symlink), readable by its owner only, hold a token
of at least ``TOKEN_MIN_LENGTH`` printable characters, and sit in directories nobody else
can write to: a group- or world-writable directory anywhere above it would let another
user swap the file (or a directory on the way) for one of their own. A directory with the
sticky bit (``/tmp``) is accepted when it and everything below it belong to root, to us or
to the file's owner, since in a sticky directory only an entry's owner may rename it. The
sidecar also insists that the file is its own (``owner=os.geteuid()``); the CLI, often
run by root with a sidecar running as another user, does not.

Stdlib only: the CLI imports this too and should start fast.
"""

from __future__ import annotations

import os
import stat

__all__ = ["TOKEN_MIN_LENGTH", "TokenFileError", "TokenKeeper", "load_token"]

TOKEN_MIN_LENGTH = 16
"""Shorter tokens can be guessed by a local process hammering the API."""
_TOKEN_FILE_MAX = 64 * 1024


class TokenFileError(Exception):
    """The token file is missing, unsafe or empty; the message names the file."""


def load_token(path: str | os.PathLike[str], *, owner: int | None = None) -> str:
    """Read a token file, refusing one that others could read, write or replace.

    ``owner``, when given, is the uid that must own the file (the sidecar passes its own).
    Surrounding whitespace is stripped. Raises TokenFileError naming the file and the
    problem (and how to fix it) otherwise.
    """
    name = os.fspath(path)
    fd = _open(name)
    try:
        info = os.fstat(fd)
        _check_file(name, info, owner)
        # A token is short; a huge file is a mistake, not a token.
        data = os.read(fd, _TOKEN_FILE_MAX + 1)
    finally:
        os.close(fd)
    _check_directories(name, trusted={0, os.geteuid(), info.st_uid})
    return _token(name, data)


def _open(name: str) -> int:
    try:
        # Open first and check the opened file, so it cannot be swapped in between.
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TokenFileError(f"token file {name}: not found") from None
    except PermissionError:
        raise TokenFileError(f"token file {name}: permission denied") from None
    except OSError as error:
        if os.path.islink(name):
            raise TokenFileError(f"token file {name}: is a symbolic link, not a file") from None
        raise TokenFileError(f"token file {name}: cannot open: {error.strerror}") from None


def _check_file(name: str, info: os.stat_result, owner: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise TokenFileError(f"token file {name}: not a regular file")
    if info.st_mode & 0o077:
        raise TokenFileError(
            f"token file {name}: readable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {name}"
        )
    if owner is not None and info.st_uid != owner:
        raise TokenFileError(
            f"token file {name}: owned by uid {info.st_uid}, not by this sidecar's user "
            f"(uid {owner}); run: chown {owner} {name}"
        )


def _check_directories(name: str, trusted: set[int]) -> None:
    """Every directory above the file, as written and as resolved, is safe (see above)."""
    written = os.path.dirname(os.path.abspath(name))
    for directory in dict.fromkeys([*_ancestors(written), *_ancestors(os.path.realpath(written))]):
        try:
            info = os.stat(directory)
        except OSError as error:
            raise TokenFileError(
                f"token file {name}: cannot check directory {directory}: {error.strerror}"
            ) from None
        if info.st_uid not in trusted:
            raise TokenFileError(
                f"token file {name}: directory {directory} belongs to uid {info.st_uid}, "
                "who could replace the token"
            )
        if info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX:
            raise TokenFileError(
                f"token file {name}: directory {directory} is writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}), so the token could be replaced; "
                f"run: chmod go-w {directory}"
            )


def _ancestors(directory: str) -> list[str]:
    chain = []
    while True:
        chain.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            return chain
        directory = parent


def _token(name: str, data: bytes) -> str:
    if len(data) > _TOKEN_FILE_MAX:
        raise TokenFileError(f"token file {name}: larger than 64 KiB, not a token")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise TokenFileError(f"token file {name}: not UTF-8 text") from None
    if not token:
        raise TokenFileError(f"token file {name}: empty")
    if any(not char.isprintable() or char.isspace() for char in token):
        raise TokenFileError(f"token file {name}: the token contains blanks or control characters")
    if len(token) < TOKEN_MIN_LENGTH:
        raise TokenFileError(
            f"token file {name}: the token has {len(token)} characters, fewer than "
            f"{TOKEN_MIN_LENGTH}; make one with: head -c 24 /dev/urandom | base64 > {name}"
        )
    return token


class TokenKeeper:
    """The sidecar's API token: read at start, and again at every reload.

    A reload that finds the file unsafe is rejected as a whole (the caller turns the
    TokenFileError into a rejected reload), and the token in force stays.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._token = self._read()

    @property
    def current(self) -> str | None:
        """The token requests must present; None when no token file is configured."""
        return self._token

    def reload(self) -> None:
        """Read the file again; raises TokenFileError and keeps the old token if unsafe."""
        self._token = self._read()

    def _read(self) -> str | None:
        if self._path is None:
            return None
        return load_token(self._path, owner=os.geteuid())
