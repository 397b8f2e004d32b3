"""BFD Control packets (RFC 5880 §4.1): encode, decode, and the checks of §6.8.6.

The wire format is fixed (24 bytes, no authentication section, since we never enable
authentication), so decoding is a handful of ``struct`` fields and the validation list of
§6.8.6 that can be decided from the packet alone. The checks that need a session (which
discriminator is ours) live in the session machine. Every malformed input raises
``BfdPacketError``, the peer's fault, and nothing else: the fuzz tests hold us to that.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = [
    "BFD_VERSION",
    "PACKET_LENGTH",
    "BfdPacketError",
    "ControlPacket",
    "Diag",
    "State",
    "decode",
    "encode",
]

BFD_VERSION = 1
PACKET_LENGTH = 24  # the mandatory section; an authentication section would follow it
_HEADER = struct.Struct("!BBBBIIIII")
_MAX_U32 = 0xFFFF_FFFF

# Flag bits of the second byte, after the 2-bit state (RFC 5880 §4.1).
_POLL = 0x20
_FINAL = 0x10
_CPI = 0x08
_AUTH = 0x04
_DEMAND = 0x02
_MULTIPOINT = 0x01


class State(enum.IntEnum):
    """bfd.SessionState values, as carried in the Sta field."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(enum.IntEnum):
    """Diagnostic codes (RFC 5880 §4.1); the ones we set are 0, 1, 3 and 7."""

    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class BfdPacketError(ValueError):
    """The peer sent a packet that RFC 5880 §6.8.6 says to discard."""


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """One BFD Control packet; intervals in microseconds, as on the wire."""

    state: State
    my_discriminator: int
    your_discriminator: int
    desired_min_tx_us: int
    required_min_rx_us: int
    detect_mult: int
    diag: Diag = Diag.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    required_min_echo_rx_us: int = 0

    def __post_init__(self) -> None:
        # A local bug, not the peer's: decode() checks the same before it builds one.
        if self.poll and self.final:
            raise ValueError("a BFD packet must not carry both Poll and Final (§6.5)")
        if not 1 <= self.detect_mult <= 255:
            raise ValueError(f"detect_mult {self.detect_mult} outside 1..255")
        for value in (
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ):
            if not 0 <= value <= _MAX_U32:
                raise ValueError(f"{value} does not fit a 32-bit field")


def encode(packet: ControlPacket) -> bytes:
    """The 24 bytes of ``packet`` on the wire."""
    flags = packet.state << 6
    if packet.poll:
        flags |= _POLL
    if packet.final:
        flags |= _FINAL
    if packet.control_plane_independent:
        flags |= _CPI
    if packet.demand:
        flags |= _DEMAND
    return _HEADER.pack(
        (BFD_VERSION << 5) | packet.diag,
        flags,
        packet.detect_mult,
        PACKET_LENGTH,
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx_us,
        packet.required_min_rx_us,
        packet.required_min_echo_rx_us,
    )


def decode(data: bytes) -> ControlPacket:
    """Parse and validate one received datagram, or raise ``BfdPacketError`` saying why."""
    if len(data) < PACKET_LENGTH:
        raise BfdPacketError(f"packet of {len(data)} bytes, shorter than {PACKET_LENGTH}")
    (vers_diag, flags, mult, length, my_disc, your_disc, tx_us, rx_us, echo_us) = (
        _HEADER.unpack_from(data)
    )
    version = vers_diag >> 5
    if version != BFD_VERSION:
        raise BfdPacketError(f"version {version}, not {BFD_VERSION}")
    if flags & _AUTH:
        # §6.8.6: A set while no authentication is in use on the session: discard.
        raise BfdPacketError("authentication present, and none is configured")
    # Without authentication the Length field must be exactly the mandatory section.
    if length < PACKET_LENGTH:
        raise BfdPacketError(f"length field {length} smaller than {PACKET_LENGTH}")
    if length > len(data):
        raise BfdPacketError(f"length field {length} larger than the {len(data)} bytes received")
    if mult == 0:
        raise BfdPacketError("detect multiplier is zero")
    if flags & _MULTIPOINT:
        raise BfdPacketError("multipoint bit set")
    if my_disc == 0:
        raise BfdPacketError("my discriminator is zero")
    state = State(flags >> 6)
    if your_disc == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise BfdPacketError(f"your discriminator is zero in state {state.name}")
    if flags & _POLL and flags & _FINAL:
        raise BfdPacketError("both poll and final set")
    diag_code = vers_diag & 0x1F
    try:
        diag = Diag(diag_code)
    except ValueError:
        # Reserved codes do not make the packet invalid; they only tell us less.
        diag = Diag.NONE
    return ControlPacket(
        state=state,
        my_discriminator=my_disc,
        your_discriminator=your_disc,
        desired_min_tx_us=tx_us,
        required_min_rx_us=rx_us,
        detect_mult=mult,
        diag=diag,
        poll=bool(flags & _POLL),
        final=bool(flags & _FINAL),
        control_plane_independent=bool(flags & _CPI),
        demand=bool(flags & _DEMAND),
        required_min_echo_rx_us=echo_us,
    )
