"""Netlink framing shared by the event sources: messages, attributes, errors, dumps.

Theory of operation: a netlink datagram holds one or more messages, each a 16-byte
``nlmsghdr`` (length, type, flags, sequence, port id) followed by a payload padded to 4
bytes. A dump request (``NLM_F_DUMP``) is answered by ``NLM_F_MULTI`` messages carrying our
sequence number and closed by ``NLMSG_DONE``; a failure comes back as ``NLMSG_ERROR`` with a
negative errno. Attributes inside a payload are (length, type, value) records, also padded
to 4 bytes. The parsing here is pure (bytes in, values out); :func:`open_socket` and
:func:`dump` are the thin shell over a real netlink socket.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_DUMP",
    "NLM_F_DUMP_INTR",
    "NLM_F_REQUEST",
    "Message",
    "NetlinkFormatError",
    "attributes",
    "dump",
    "error_code",
    "messages",
    "open_socket",
    "pack_request",
]

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
SOL_NETLINK = 270

_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_RECV_SIZE = 65536  # kernel dump skbs are at most 32 KiB; a datagram is never cut
_sequence = itertools.count(1)


class NetlinkFormatError(ValueError):
    """The kernel sent bytes that do not parse as netlink messages (or we misread them)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message: header fields and its payload (without the header)."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes


def _align(length: int) -> int:
    return (length + 3) & ~3


def messages(data: bytes) -> Iterator[Message]:
    """Split one datagram into its messages; raise NetlinkFormatError on a bad length."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, seq, pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise NetlinkFormatError(f"netlink message length {length} at offset {offset}")
        yield Message(kind, flags, seq, pid, data[offset + _HEADER.size : offset + length])
        offset += _align(length)


def attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The (type -> value) attributes of a payload from ``offset`` on; the last one wins."""
    found: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > len(data):
            raise NetlinkFormatError(f"netlink attribute length {length} at offset {offset}")
        found[kind & _NLA_TYPE_MASK] = data[offset + _ATTR.size : offset + length]
        offset += _align(length)
    return found


def error_code(message: Message) -> int:
    """The positive errno of an NLMSG_ERROR message (0 is an acknowledgement)."""
    if len(message.payload) < 4:
        raise NetlinkFormatError("truncated NLMSG_ERROR")
    (code,) = struct.unpack_from("=i", message.payload)
    return -int(code)


def pack_request(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    """A request message; the kernel fills in the port id of the sender itself."""
    return _HEADER.pack(_HEADER.size + len(payload), kind, flags, seq, 0) + payload


# -- shell ---------------------------------------------------------------------------------


def open_socket(protocol: int, groups: int = 0, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking netlink socket of ``protocol``, bound and subscribed to ``groups``.

    ``groups`` is the legacy bit mask (group N is bit N-1). The socket belongs to the
    network namespace of the calling thread at this moment, for its whole life.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, groups))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def dump(sock: socket.socket, kind: int, payload: bytes) -> list[Message]:
    """Send a dump request on ``sock`` and collect the answer up to NLMSG_DONE.

    The socket must carry nothing else (no multicast subscriptions) and be used by one
    dump at a time: replies are matched by sequence number, and stale ones are skipped.
    Raises OSError with the kernel's errno if it refuses the request, and
    InterruptedError if the answer was inconsistent (``NLM_F_DUMP_INTR``: the table
    changed during the dump; the caller may simply ask again).
    """
    loop = asyncio.get_running_loop()
    seq = next(_sequence) & 0xFFFFFFFF
    await loop.sock_sendall(sock, pack_request(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, payload))
    answer: list[Message] = []
    interrupted = False
    while True:
        data = await loop.sock_recv(sock, _RECV_SIZE)
        for message in messages(data):
            if message.seq != seq:
                continue  # left over from an earlier, abandoned request
            interrupted = interrupted or bool(message.flags & NLM_F_DUMP_INTR)
            if message.type == NLMSG_DONE:
                if interrupted:
                    raise InterruptedError(errno.EINTR, "netlink dump interrupted")
                return answer
            if message.type == NLMSG_ERROR:
                code = error_code(message)
                raise OSError(code, f"netlink dump refused: {os.strerror(code)}")
            answer.append(message)
