"""A minimal D-Bus client: the wire format (pure) and one connection on asyncio (shell).

Theory of operation: a D-Bus message is a 12-byte fixed header (endianness, type, flags,
version, body length, serial), an array of header fields ``a(yv)`` (path, interface,
member, reply serial, ...), padding to 8, and a body marshalled after its signature.
Every value is aligned to its type's natural size from the start of the message, which
is why :class:`_Writer` and :class:`_Reader` keep one buffer for header and body. The
connection authenticates with SASL EXTERNAL (the kernel tells the bus our uid), says
Hello, and then matches replies to calls by serial and hands signals to a callback.

Only what the unit watch needs is here: method calls, replies, errors and signals, the
basic types, arrays, dicts, structs and variants; no unix fds, no server side. Variants
decode to their value (the signature is dropped); to encode one, pass (signature, value).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

__all__ = [
    "METHOD_CALL",
    "SIGNAL",
    "DBusConnection",
    "DBusError",
    "DBusMessage",
    "decode_message",
    "encode_message",
    "message_length",
    "split_signature",
]

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SENDER, SIGNATURE = range(1, 9)
_FIELD_TYPES = {PATH: "o", INTERFACE: "s", MEMBER: "s", ERROR_NAME: "s", REPLY_SERIAL: "u",
                DESTINATION: "s", SENDER: "s", SIGNATURE: "g"}  # fmt: skip
_FIXED = {"y": "B", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}
_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4,
          "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1}  # fmt: skip
_BASIC = frozenset("ybnqiuxtdhsog")
_MAX_MESSAGE = 1 << 27  # the specification's limit


class DBusError(Exception):
    """An ERROR reply (its D-Bus error name and message), or a protocol failure."""

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name


def _complete_type_end(signature: str, start: int) -> int:
    """Index just past the complete type starting at ``start``."""
    try:
        char = signature[start]
    except IndexError:
        raise DBusError("InvalidSignature", signature) from None
    if char == "a":
        return _complete_type_end(signature, start + 1)
    if char == "{":  # a dict entry: exactly a basic key and a value
        if signature[start + 1 : start + 2] not in _BASIC:
            raise DBusError("InvalidSignature", signature)
        end = _complete_type_end(signature, start + 2)
        if signature[end : end + 1] != "}":
            raise DBusError("InvalidSignature", signature)
        return end + 1
    if char == "(":
        end = start + 1
        while end < len(signature) and signature[end] != ")":
            end = _complete_type_end(signature, end)
        if end >= len(signature) or end == start + 1:
            raise DBusError("InvalidSignature", signature)
        return end + 1
    if char in _ALIGN:
        return start + 1
    raise DBusError("InvalidSignature", signature)


def split_signature(signature: str) -> list[str]:
    """The complete types of a signature: "sa{sv}as" -> ["s", "a{sv}", "as"]."""
    types, start = [], 0
    while start < len(signature):
        end = _complete_type_end(signature, start)
        types.append(signature[start:end])
        start = end
    return types


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def align(self, size: int) -> None:
        self.buf += bytes(-len(self.buf) % size)

    def write(self, kind: str, value: Any) -> None:
        char = kind[0]
        self.align(_ALIGN[char])
        if char in _FIXED:
            self.buf += struct.pack("<" + _FIXED[char], value)
        elif char == "b":
            self.buf += struct.pack("<I", int(bool(value)))
        elif char in "so":
            data = value.encode()
            self.buf += struct.pack("<I", len(data)) + data + b"\0"
        elif char == "g":
            data = value.encode()
            self.buf += bytes([len(data)]) + data + b"\0"
        elif char == "v":
            inner, payload = value
            self.write("g", inner)
            self.write(inner, payload)
        elif char == "a":
            self._array(kind[1:], value)
        else:  # struct
            for sub, item in zip(split_signature(kind[1:-1]), value, strict=True):
                self.write(sub, item)

    def _array(self, element: str, value: Any) -> None:
        at = len(self.buf)
        self.buf += bytes(4)
        self.align(_ALIGN[element[0]])  # padding before the first element is not counted
        start = len(self.buf)
        if element[0] == "{":
            key, val = split_signature(element[1:-1])
            for k, v in value.items():
                self.align(8)
                self.write(key, k)
                self.write(val, v)
        else:
            for item in value:
                self.write(element, item)
        struct.pack_into("<I", self.buf, at, len(self.buf) - start)


class _Reader:
    def __init__(self, data: bytes, little: bool) -> None:
        self.data = data
        self.pos = 0
        self.order = "<" if little else ">"

    def align(self, size: int) -> None:
        self.pos += -self.pos % size

    def _unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise DBusError("Truncated", f"message ends inside a {fmt!r}")
        (value,) = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += size
        return value

    def _bytes(self, length: int) -> bytes:
        if self.pos + length + 1 > len(self.data):
            raise DBusError("Truncated", "message ends inside a string")
        value = self.data[self.pos : self.pos + length]
        self.pos += length + 1  # and the NUL
        return value

    def read(self, kind: str) -> Any:
        char = kind[0]
        self.align(_ALIGN[char])
        if char in _FIXED:
            return self._unpack(_FIXED[char])
        if char == "b":
            return bool(self._unpack("I"))
        if char in "so":
            return self._bytes(self._unpack("I")).decode()
        if char == "g":
            return self._bytes(self._unpack("B")).decode()
        if char == "v":
            return self.read(self.read("g"))
        if char == "a":
            return self._array(kind[1:])
        return tuple(self.read(sub) for sub in split_signature(kind[1:-1]))

    def _array(self, element: str) -> Any:
        length = self._unpack("I")
        self.align(_ALIGN[element[0]])
        end = self.pos + length
        if end > len(self.data):
            raise DBusError("Truncated", "message ends inside an array")
        if element[0] == "{":
            key, val = split_signature(element[1:-1])
            entries = {}
            while self.pos < end:
                self.align(8)
                k = self.read(key)
                entries[k] = self.read(val)
            return entries
        items = []
        while self.pos < end:
            items.append(self.read(element))
        return items


@dataclass(frozen=True, slots=True)
class DBusMessage:
    """A decoded message: type, serial, header fields and body values."""

    type: int
    serial: int
    fields: dict[int, Any] = field(default_factory=dict)
    body: tuple[Any, ...] = ()
    flags: int = 0

    @property
    def path(self) -> str | None:
        """The object path (signals and calls)."""
        return self.fields.get(PATH)

    @property
    def member(self) -> str | None:
        """The method or signal name."""
        return self.fields.get(MEMBER)

    @property
    def interface(self) -> str | None:
        """The interface of the method or signal."""
        return self.fields.get(INTERFACE)

    @property
    def sender(self) -> str | None:
        """The sender's unique name, set by the bus (clients cannot forge it)."""
        return self.fields.get(SENDER)


def encode_message(
    kind: int,
    serial: int,
    fields: dict[int, Any],
    signature: str = "",
    body: Sequence[Any] = (),
    flags: int = 0,
) -> bytes:
    """One message, little-endian; ``fields`` maps field codes to plain values."""
    body_writer = _Writer()
    for sub, value in zip(split_signature(signature), body, strict=True):
        body_writer.write(sub, value)
    all_fields = dict(fields)
    if signature:
        all_fields[SIGNATURE] = signature
    header = _Writer()
    header.buf += struct.pack("<BBBBII", ord("l"), kind, flags, 1, len(body_writer.buf), serial)
    header.write("a(yv)", [(code, (_FIELD_TYPES[code], v)) for code, v in all_fields.items()])
    header.align(8)
    return bytes(header.buf + body_writer.buf)


def message_length(prefix: bytes) -> int:
    """Total length of a message from its first 16 bytes."""
    little = prefix[:1] == b"l"
    order = "<" if little else ">"
    body_length, _, fields_length = struct.unpack_from(order + "III", prefix, 4)
    total = 16 + fields_length + (-(16 + fields_length) % 8) + body_length
    if total > _MAX_MESSAGE:
        raise DBusError("TooLarge", f"message of {total} bytes")
    return int(total)


def decode_message(data: bytes) -> DBusMessage:
    """Decode one whole message (as long as message_length said)."""
    if data[:1] not in (b"l", b"B"):
        raise DBusError("BadEndianness", repr(data[:1]))
    reader = _Reader(data, little=data[:1] == b"l")
    reader.pos = 1
    kind, flags, _version = reader.read("y"), reader.read("y"), reader.read("y")
    _body_length, serial = reader.read("u"), reader.read("u")
    fields = dict(reader.read("a(yv)"))
    reader.align(8)
    body = tuple(reader.read(sub) for sub in split_signature(fields.get(SIGNATURE, "")))
    return DBusMessage(type=kind, serial=serial, fields=fields, body=body, flags=flags)


# -- shell -----------------------------------------------------------------------------------


class DBusConnection:
    """One authenticated connection to a bus, on the running loop (asyncio streams).

    ``on_signal`` receives every SIGNAL message; ``on_lost`` is called once if the bus
    closes the connection. Calls pending then fail with ConnectionError.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_signal: Callable[[DBusMessage], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_signal = on_signal
        self._on_lost = on_lost
        self._serial = 0
        self._pending: dict[int, asyncio.Future[DBusMessage]] = {}
        self._task: asyncio.Task[None] | None = None
        self.unique_name = ""

    @classmethod
    async def connect(
        cls,
        path: str,
        on_signal: Callable[[DBusMessage], None],
        on_lost: Callable[[], None] = lambda: None,
        timeout: float = 5.0,
    ) -> DBusConnection:
        """Connect to the bus socket at ``path``, authenticate and say Hello."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(path)
            connection = cls(reader, writer, on_signal, on_lost)
            try:
                await connection._authenticate()
                connection._task = asyncio.get_running_loop().create_task(connection._read())
                (connection.unique_name,) = await connection.call(
                    "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello"
                )
            except BaseException:
                connection.close()
                raise
        return connection

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    async def _authenticate(self) -> None:
        uid = str(os.geteuid()).encode().hex().encode()
        self._writer.write(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        answer = await self._reader.readline()
        if not answer.startswith(b"OK "):
            raise DBusError("AuthFailed", answer.decode(errors="replace").strip())
        self._writer.write(b"BEGIN\r\n")

    async def call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        timeout: float = 5.0,
    ) -> tuple[Any, ...]:
        """Call a method and return the reply's body; raise DBusError on an ERROR reply."""
        self._serial += 1
        serial = self._serial
        fields = {PATH: path, INTERFACE: interface, MEMBER: member, DESTINATION: destination}
        future: asyncio.Future[DBusMessage] = asyncio.get_running_loop().create_future()
        self._pending[serial] = future
        try:
            self._writer.write(encode_message(METHOD_CALL, serial, fields, signature, body))
            async with asyncio.timeout(timeout):
                reply = await future
        finally:
            self._pending.pop(serial, None)
        if reply.type == ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(reply.fields.get(ERROR_NAME, "Error"), text)
        return reply.body

    async def emit_signal(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: Sequence[Any] = (),
        *,
        destination: str | None = None,
    ) -> None:
        """Send a signal (unicast to ``destination``, else broadcast)."""
        self._serial += 1
        fields: dict[int, Any] = {PATH: path, INTERFACE: interface, MEMBER: member}
        if destination is not None:
            fields[DESTINATION] = destination
        self._writer.write(encode_message(SIGNAL, self._serial, fields, signature, body))
        await self._writer.drain()

    async def _read(self) -> None:
        try:
            while True:
                prefix = await self._reader.readexactly(16)
                rest = await self._reader.readexactly(message_length(prefix) - 16)
                self._dispatch(decode_message(prefix + rest))
        except (asyncio.IncompleteReadError, ConnectionError, DBusError) as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"bus connection lost: {exc}"))
            self._on_lost()

    def _dispatch(self, message: DBusMessage) -> None:
        if message.type in (METHOD_RETURN, ERROR):
            future = self._pending.get(message.fields.get(REPLY_SERIAL, -1))
            if future is not None and not future.done():
                future.set_result(message)
        elif message.type == SIGNAL:
            self._on_signal(message)

    def close(self) -> None:
        """Close the connection (pending calls are cancelled)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for future in self._pending.values():
            future.cancel()
        self._writer.close()
