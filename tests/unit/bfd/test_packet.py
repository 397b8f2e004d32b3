"""BFD Control packets: the wire format and the discard rules of RFC 5880 §6.8.6."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.bfd import (
    PACKET_LENGTH,
    BfdPacketError,
    ControlPacket,
    Diag,
    State,
    decode,
    encode,
)

U32 = st.integers(min_value=0, max_value=0xFFFF_FFFF)


def sample(**changes: object) -> ControlPacket:
    fields: dict[str, object] = {
        "state": State.UP,
        "my_discriminator": 0x01020304,
        "your_discriminator": 0x0A0B0C0D,
        "desired_min_tx_us": 300_000,
        "required_min_rx_us": 300_000,
        "detect_mult": 3,
    }
    fields.update(changes)
    return ControlPacket(**fields)  # type: ignore[arg-type]


@st.composite
def packets(draw: st.DrawFn) -> ControlPacket:
    state = draw(st.sampled_from(State))
    flag = draw(st.sampled_from(["none", "poll", "final"]))
    your = draw(U32) if state in (State.UP, State.INIT) else draw(st.just(0) | U32)
    return ControlPacket(
        state=state,
        my_discriminator=draw(st.integers(1, 0xFFFF_FFFF)),
        your_discriminator=your if your or state not in (State.UP, State.INIT) else 1,
        desired_min_tx_us=draw(U32),
        required_min_rx_us=draw(U32),
        detect_mult=draw(st.integers(1, 255)),
        diag=draw(st.sampled_from(Diag)),
        poll=flag == "poll",
        final=flag == "final",
        control_plane_independent=draw(st.booleans()),
        demand=draw(st.booleans()),
        required_min_echo_rx_us=draw(U32),
    )


class TestWireFormat:
    def test_encodes_the_rfc_layout(self) -> None:
        """Version 1, diag, state and flags, mult, length 24, then five 32-bit fields."""
        data = encode(sample(diag=Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, poll=True))
        assert data == bytes.fromhex(
            "23"  # version 1 << 5 | diag 3
            "e0"  # state UP (3) << 6 | poll 0x20
            "03"  # detect mult
            "18"  # length 24
            "01020304"
            "0a0b0c0d"
            "000493e0"  # 300000 us
            "000493e0"
            "00000000"
        )

    @given(packets())
    def test_round_trips(self, packet: ControlPacket) -> None:
        """Whatever we can send, we read back unchanged."""
        data = encode(packet)
        assert len(data) == PACKET_LENGTH
        assert decode(data) == packet

    def test_reads_a_packet_longer_than_its_length_field(self) -> None:
        """Trailing bytes past the Length field (padding) do not make a packet invalid."""
        packet = sample()
        assert decode(encode(packet) + b"\0\0\0\0") == packet

    def test_reserved_diag_codes_read_as_none(self) -> None:
        """A diag code we do not know does not discard the packet."""
        data = bytearray(encode(sample()))
        data[0] = (1 << 5) | 31
        assert decode(bytes(data)).diag is Diag.NONE

    def test_refuses_to_build_poll_and_final_together(self) -> None:
        """Building a packet with both P and F is our bug, not the peer's."""
        with pytest.raises(ValueError, match="Poll and Final"):
            sample(poll=True, final=True)


def patched(offset: int, value: int) -> bytes:
    data = bytearray(encode(sample()))
    data[offset] = value
    return bytes(data)


class TestDiscardRules:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "shorter than 24"),
            (encode(sample())[:23], "shorter than 24"),
            (patched(0, 2 << 5), "version 2"),
            (patched(0, 0), "version 0"),
            (patched(1, 0xC0 | 0x04), "authentication"),
            (patched(3, 23), "smaller than 24"),
            (patched(3, 26), "larger than the 24 bytes"),
            (patched(2, 0), "multiplier is zero"),
            (patched(1, 0xC0 | 0x01), "multipoint"),
            (encode(sample())[:4] + b"\0\0\0\0" + encode(sample())[8:], "my discriminator"),
            (encode(sample())[:8] + b"\0\0\0\0" + encode(sample())[12:], "zero in state UP"),
            (
                encode(sample(state=State.INIT))[:8]
                + b"\0\0\0\0"
                + encode(sample(state=State.INIT))[12:],
                "zero in state INIT",
            ),
            (patched(1, 0xC0 | 0x20 | 0x10), "both poll and final"),
        ],
    )
    def test_discards(self, data: bytes, reason: str) -> None:
        """Each §6.8.6 rule that needs only the packet raises a remote error naming it."""
        with pytest.raises(BfdPacketError, match=reason):
            decode(data)

    @pytest.mark.parametrize("state", [State.DOWN, State.ADMIN_DOWN])
    def test_accepts_zero_your_discriminator_while_down(self, state: State) -> None:
        """A peer that has not heard from us yet sends Your Discriminator 0 in DOWN."""
        assert decode(encode(sample(state=state, your_discriminator=0))).state is state

    def test_every_prefix_of_a_packet_is_refused(self) -> None:
        """Fed one byte at a time, no truncated packet parses."""
        data = encode(sample())
        for end in range(len(data)):
            with pytest.raises(BfdPacketError):
                decode(data[:end])
        assert decode(data) == sample()

    def test_every_single_byte_change_parses_or_is_refused(self) -> None:
        """Any value at any offset: a packet or a BfdPacketError, never anything else."""
        base = encode(sample())
        outcomes = {"parsed": 0, "refused": 0}
        for offset in range(len(base)):
            for value in range(256):
                data = bytearray(base)
                data[offset] = value
                try:
                    decode(bytes(data))
                except BfdPacketError:
                    outcomes["refused"] += 1
                else:
                    outcomes["parsed"] += 1
        assert outcomes["parsed"] > 0
        assert outcomes["refused"] > 0

    @given(st.binary(max_size=64))
    def test_any_input_parses_or_raises_the_remote_error(self, data: bytes) -> None:
        """The fuzz invariant: no other exception escapes decode()."""
        try:
            packet = decode(data)
        except BfdPacketError:
            return
        assert decode(encode(packet)) == packet

    @given(st.binary(min_size=20, max_size=20), U32)
    def test_any_header_tail_parses_or_raises_the_remote_error(
        self, tail: bytes, first: int
    ) -> None:
        """Random bodies behind a plausible first word reach the deeper checks."""
        data = struct.pack("!I", first) + tail
        with contextlib.suppress(BfdPacketError):
            decode(data)
