"""The reset guard's classic BPF program, run by a small interpreter over real frames."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

import pytest

from anycast_announcer.rescue.guard import (
    DEFAULT_MARK,
    MAX_INSTRUCTIONS,
    TC_ACT_SHOT,
    TC_ACT_UNSPEC,
    Instruction,
    bytecode,
    guard_program,
)

PREFIXES = [
    ipaddress.ip_network("10.255.0.0/24"),
    ipaddress.ip_network("192.0.2.7/32"),
    ipaddress.ip_network("fd00:255::/64"),
    ipaddress.ip_network("2001:db8:ff00::/40"),
]
RST, ACK, SYN = 0x04, 0x10, 0x02


def run(program: Sequence[Instruction], frame: bytes, mark: int = 0) -> int:
    """What the kernel's classic BPF interpreter returns (only the opcodes used)."""
    a = x = pc = 0
    while True:
        insn = program[pc]
        pc += 1
        if insn.code == 0x20:
            a = mark if insn.k == 0xFFFFF014 else struct.unpack_from("!I", frame, insn.k)[0]
        elif insn.code == 0x28:
            a = struct.unpack_from("!H", frame, insn.k)[0]
        elif insn.code == 0x30:
            a = frame[insn.k]
        elif insn.code == 0x50:
            a = frame[x + insn.k]
        elif insn.code == 0xB1:
            x = 4 * (frame[insn.k] & 0xF)
        elif insn.code == 0x54:
            a &= insn.k
        elif insn.code == 0x05:
            pc += insn.k
        elif insn.code == 0x15:
            pc += insn.jt if a == insn.k else insn.jf
        elif insn.code == 0x45:
            pc += insn.jt if a & insn.k else insn.jf
        elif insn.code == 0x06:
            return insn.k
        else:
            raise AssertionError(f"unexpected opcode {insn.code:#x}")


def tcp(flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", 8080, 40000, 1, 2, 5 << 4, flags, 1000, 0, 0)


def ipv4_frame(source: str, flags: int, *, options: int = 0, fragment: int = 0) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45 + options,
        0,
        40,
        0,
        fragment,
        64,
        6,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address("10.0.100.2").packed,
    )
    return bytes(12) + b"\x08\x00" + header + bytes(4 * options) + tcp(flags)


def ipv6_frame(source: str, flags: int, next_header: int = 6) -> bytes:
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        20,
        next_header,
        64,
        ipaddress.IPv6Address(source).packed,
        ipaddress.IPv6Address("fd00:0:100::2").packed,
    )
    return bytes(12) + b"\x86\xdd" + header + tcp(flags)


PROGRAM = guard_program(PREFIXES, DEFAULT_MARK)


@pytest.mark.parametrize(
    "frame",
    [
        ipv4_frame("10.255.0.1", RST),
        ipv4_frame("10.255.0.254", RST | ACK),
        ipv4_frame("192.0.2.7", RST),
        ipv4_frame("10.255.0.1", RST, options=2),  # the TCP header moves with the options
        ipv6_frame("fd00:255::1", RST),
        ipv6_frame("fd00:255::ffff:1", RST | ACK),
        ipv6_frame("2001:db8:ff12::1", RST),
    ],
)
def test_a_reset_from_an_anycast_prefix_without_the_mark_is_dropped(frame: bytes) -> None:
    assert run(PROGRAM, frame) == TC_ACT_SHOT
    assert run(PROGRAM, frame, mark=DEFAULT_MARK | 0x7) == TC_ACT_UNSPEC


@pytest.mark.parametrize(
    "frame",
    [
        ipv4_frame("10.255.1.1", RST),  # outside the /24
        ipv4_frame("192.0.2.8", RST),
        ipv4_frame("10.255.0.1", ACK),
        ipv4_frame("10.255.0.1", SYN | ACK),
        ipv4_frame("10.255.0.1", RST, fragment=0x0010),  # a later fragment
        ipv6_frame("fd00:255:0:1::1", RST),
        ipv6_frame("2001:db8:fe00::1", RST),
        ipv6_frame("fd00:255::1", ACK),
        ipv6_frame("fd00:255::1", RST, next_header=17),
        bytes(12) + b"\x08\x06" + bytes(28),  # ARP
    ],
)
def test_anything_else_is_left_alone(frame: bytes) -> None:
    assert run(PROGRAM, frame) == TC_ACT_UNSPEC


def test_whole_address_space_prefixes() -> None:
    program = guard_program(
        [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")], DEFAULT_MARK
    )
    assert run(program, ipv4_frame("203.0.113.9", RST)) == TC_ACT_SHOT
    assert run(program, ipv6_frame("2001:db8::9", RST)) == TC_ACT_SHOT


def test_one_family_only() -> None:
    program = guard_program([ipaddress.ip_network("fd00:255::1/128")], DEFAULT_MARK)
    assert run(program, ipv4_frame("10.255.0.1", RST)) == TC_ACT_UNSPEC
    assert run(program, ipv6_frame("fd00:255::1", RST)) == TC_ACT_SHOT
    assert run(program, ipv6_frame("fd00:255::2", RST)) == TC_ACT_UNSPEC


def test_many_prefixes_need_no_long_conditional_jumps() -> None:
    """300 prefixes of each family: 8-bit jump offsets would overflow if the verdicts
    were shared at the end; the last prefix of each family still matches."""
    v4 = [ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24") for i in range(300)]
    v6 = [ipaddress.ip_network(f"fd00:{i:x}::/48") for i in range(300)]
    program = guard_program([*v4, *v6], DEFAULT_MARK)
    assert all(i.jt < 256 and i.jf < 256 for i in program)
    assert run(program, ipv4_frame("10.1.43.9", RST)) == TC_ACT_SHOT
    assert run(program, ipv6_frame("fd00:12b::9", RST)) == TC_ACT_SHOT
    assert run(program, ipv6_frame("fd00:12c::9", RST)) == TC_ACT_UNSPEC


def test_too_many_prefixes_name_the_limit_and_the_way_out() -> None:
    v6 = [ipaddress.ip_network(f"fd00:{i:x}::/48") for i in range(MAX_INSTRUCTIONS // 4)]
    with pytest.raises(ValueError, match="reset_guard_mark: 0"):
        guard_program(v6, DEFAULT_MARK)


def test_bytecode_is_what_tc_prints() -> None:
    program = guard_program([ipaddress.ip_network("10.255.0.1/32")], 0x100000)
    text = bytecode(program)
    count, *instructions = text.split(",")
    assert int(count) == len(program) == len(instructions)
    assert instructions[0] == "32 0 0 4294963220"  # ld skb->mark
    assert instructions[1] == "69 0 1 1048576"
