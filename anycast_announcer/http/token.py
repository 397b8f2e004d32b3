"""The bearer token that guards the mutating endpoints, read from a private file.

Stdlib only: the CLI imports this too and should start fast.
"""

from __future__ import annotations

import os
import stat

__all__ = ["TokenFileError", "load_token"]


class TokenFileError(Exception):
    """The token file is missing, unsafe or empty; the message names the file."""


def load_token(path: str | os.PathLike[str]) -> str:
    """Read a token file, refusing one that others could read or that holds nothing.

    The file must be a regular file, readable by us, with no group or other permission
    bits (``chmod 600``), and hold a non-blank token; surrounding whitespace is stripped.
    """
    name = os.fspath(path)
    try:
        # Open first and check the opened file, so it cannot be swapped in between.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise TokenFileError(f"token file {name}: not found") from None
    except PermissionError:
        raise TokenFileError(f"token file {name}: permission denied") from None
    except OSError as error:
        if os.path.islink(name):
            raise TokenFileError(f"token file {name}: is a symbolic link, not a file") from None
        raise TokenFileError(f"token file {name}: cannot open: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenFileError(f"token file {name}: not a regular file")
        if info.st_mode & 0o077:
            raise TokenFileError(
                f"token file {name}: readable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {name}"
            )
        # A token is short; a huge file is a mistake, not a token.
        data = os.read(fd, 64 * 1024 + 1)
    finally:
        os.close(fd)
    if len(data) > 64 * 1024:
        raise TokenFileError(f"token file {name}: larger than 64 KiB, not a token")
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise TokenFileError(f"token file {name}: not UTF-8 text") from None
    if not token:
        raise TokenFileError(f"token file {name}: empty")
    if any(not char.isprintable() or char.isspace() for char in token):
        raise TokenFileError(f"token file {name}: the token contains blanks or control characters")
    return token
