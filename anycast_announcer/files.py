"""Files and directories the sidecar writes, created so no other user can touch them.

``write_private_file_atomic`` never writes through a name someone else chose: the data
goes to a new temporary file in the same directory, created exclusively (``O_EXCL``) and
without following symlinks, with its mode set on the open descriptor whatever the umask;
it is flushed to disk, renamed over the target (``rename`` replaces a symlink planted at
the target instead of following it), and the directory is flushed too, so after a crash
the file holds either the old or the new content, never a mix or nothing.

``ensure_private_dir`` makes a directory ours alone (0700), creating it or tightening an
existing one, and refuses one that is a symlink or belongs to another user: such a
directory could be swapped or read by that user whatever its mode says.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

__all__ = ["UnsafePathError", "ensure_private_dir", "write_private_file_atomic"]


class UnsafePathError(OSError):
    """A path the sidecar must not use; the message names it and says why."""


def write_private_file_atomic(
    path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600
) -> None:
    """Replace ``path`` with ``data`` atomically and durably, readable only as ``mode`` says.

    Raises OSError (the caller decides whether that is fatal); no temporary file is left
    behind on failure.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    directory = target.parent
    temporary = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away, never add them
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory of ours with mode 0700: created, or tightened if looser.

    Missing parents are created with the default mode (0777 minus the umask), like
    ``mkdir -p``. Raises UnsafePathError when ``path`` is a symlink, not a directory, or
    owned by another user, and OSError when it cannot be created.
    """
    directory = Path(path)
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise _unsafe_dir(directory, error) from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise UnsafePathError(
                f"{directory}: owned by uid {info.st_uid}, not by us (uid {os.geteuid()}); "
                "another user could read or replace what we put there"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return directory


def _unsafe_dir(directory: Path, error: OSError) -> OSError:
    if directory.is_symlink():
        return UnsafePathError(f"{directory}: is a symbolic link; refusing to use it")
    if directory.exists() and not directory.is_dir():
        return UnsafePathError(f"{directory}: exists and is not a directory")
    return error
