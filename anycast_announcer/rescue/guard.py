"""The reset guard: a tc filter that a ruleset flush cannot delete (pure).

Why. ``nft flush ruleset`` (a host firewall's reload) deletes the rescue tables. Until
they are back (tens of milliseconds with an event-driven repair, longer under load) a
moved flow's packet meets the local stack, which answers with a reset, and the client's
session is gone. The guard makes that gap harmless: on the interfaces toward the fabric,
a classic BPF program on the clsact egress hook drops every TCP reset whose source is an
anycast prefix *unless* it carries :data:`DEFAULT_MARK` (or the configured bit), which
the rescue table's ``resets`` chain (postrouting) sets on every reset it lets out. While
the table is missing nothing sets the bit, so the resets are dropped; the client
retransmits, and after the repair its packets are rescued. tc lives outside nftables, so
no ruleset flush touches it.

Classic BPF because it is what this project can rely on without loadable modules: the
kernel needs only ``cls_bpf`` and ``sch_ingress`` (clsact); in direct-action mode the
program's return value is the verdict, so no tc action module is needed either (the
common kernels that lack ``cls_flower`` and ``act_gact`` still run it).

The program sees the frame from its Ethernet header (clsact egress on an Ethernet device)
and, in order:

- a frame with the mark bit: not ours to judge (``TC_ACT_UNSPEC``: the next filter, or
  the packet goes);
- IPv4: TCP, first fragment, RST flag, source inside one of the IPv4 prefixes: dropped
  (``TC_ACT_SHOT``);
- IPv6: next header TCP (a reset the stack sends has no extension header), RST flag,
  source inside one of the IPv6 prefixes: dropped;
- anything else: not ours.

Every conditional jump is 0 or 1 instruction (a verdict follows it inline) or stays
inside one prefix's comparison, and the two family blocks are reached with ``ja`` (a
32-bit offset): classic BPF's 8-bit jump offsets never limit the number of prefixes; the
kernel's limit of 4,096 instructions does (:data:`MAX_INSTRUCTIONS`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MARK",
    "GUARD_PREFERENCE",
    "MAX_INSTRUCTIONS",
    "Instruction",
    "bytecode",
    "guard_program",
]

DEFAULT_MARK = 0x0010_0000
"""The skb mark bit the ``resets`` chain sets on the resets it lets out."""
GUARD_PREFERENCE = 4242
"""The tc filter preference (priority) the guard is installed at, on clsact egress."""
MAX_INSTRUCTIONS = 4096
"""The kernel's limit for a classic BPF program (BPF_MAXINSNS)."""

TC_ACT_SHOT = 2
TC_ACT_UNSPEC = 0xFFFF_FFFF
"""-1: this filter has no opinion (direct-action)."""

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_LD_B_ABS = 0x30
_LD_B_IND = 0x50
_LDX_B_MSH = 0xB1
_ALU_AND_K = 0x54
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_JMP_JSET_K = 0x45
_RET_K = 0x06
_SKF_AD_MARK = 0xFFFF_F000 + 20
"""SKF_AD_OFF (-0x1000) + SKF_AD_MARK: the ancillary load of skb->mark."""

_ETH = 14
_ETHERTYPE = 12
_IPV4, _IPV6 = 0x0800, 0x86DD
_TCP = 6
_RST = 0x04

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Instruction:
    """One classic BPF instruction (``struct sock_filter``)."""

    code: int
    jt: int = 0
    jf: int = 0
    k: int = 0


def _ret(verdict: int) -> Instruction:
    return Instruction(_RET_K, k=verdict)


def _unless(code: int, k: int) -> list[Instruction]:
    """Go on if the test holds, else leave the packet alone."""
    return [Instruction(code, 1, 0, k), _ret(TC_ACT_UNSPEC)]


def _drop_if_equal(k: int) -> list[Instruction]:
    return [Instruction(_JMP_JEQ_K, 0, 1, k), _ret(TC_ACT_SHOT)]


def _ipv4_block(prefixes: Sequence[ipaddress.IPv4Network]) -> list[Instruction]:
    block = [
        Instruction(_LD_B_ABS, k=_ETH + 9),  # protocol
        *_unless(_JMP_JEQ_K, _TCP),
        Instruction(_LD_H_ABS, k=_ETH + 6),  # flags and fragment offset
        Instruction(_JMP_JSET_K, 0, 1, 0x1FFF),  # a later fragment: no TCP header
        _ret(TC_ACT_UNSPEC),
        Instruction(_LDX_B_MSH, k=_ETH),  # X = IPv4 header length
        Instruction(_LD_B_IND, k=_ETH + 13),  # TCP flags
        *_unless(_JMP_JSET_K, _RST),
    ]
    for prefix in prefixes:
        block += [
            Instruction(_LD_W_ABS, k=_ETH + 12),  # source address
            Instruction(_ALU_AND_K, k=int(prefix.netmask)),
            *_drop_if_equal(int(prefix.network_address)),
        ]
    return [*block, _ret(TC_ACT_UNSPEC)]


def _ipv6_prefix(prefix: ipaddress.IPv6Network) -> list[Instruction]:
    """Drop if the source is inside ``prefix``: four masked words compared in turn."""
    words = []
    for index in range(4):
        shift = 96 - 32 * index
        mask = (int(prefix.netmask) >> shift) & 0xFFFF_FFFF
        if mask:
            words.append((index, mask, (int(prefix.network_address) >> shift) & 0xFFFF_FFFF))
    if not words:  # ::/0
        return [_ret(TC_ACT_SHOT)]
    body: list[list[Instruction]] = []
    for index, mask, value in words:
        load = [Instruction(_LD_W_ABS, k=_ETH + 8 + 4 * index)]
        if mask != 0xFFFF_FFFF:
            load.append(Instruction(_ALU_AND_K, k=mask))
        body.append([*load, Instruction(_JMP_JEQ_K, 0, 0, value)])
    # Each mismatch jumps past the rest of this prefix (to the next one).
    out: list[Instruction] = []
    remaining = sum(len(part) for part in body) + 1
    for part in body:
        remaining -= len(part)
        compare = part[-1]
        out += [*part[:-1], Instruction(compare.code, 0, remaining, compare.k)]
    return [*out, _ret(TC_ACT_SHOT)]


def _ipv6_block(prefixes: Sequence[ipaddress.IPv6Network]) -> list[Instruction]:
    block = [
        Instruction(_LD_B_ABS, k=_ETH + 6),  # next header
        *_unless(_JMP_JEQ_K, _TCP),
        Instruction(_LD_B_ABS, k=_ETH + 40 + 13),  # TCP flags
        *_unless(_JMP_JSET_K, _RST),
    ]
    for prefix in prefixes:
        block += _ipv6_prefix(prefix)
    return [*block, _ret(TC_ACT_UNSPEC)]


def guard_program(prefixes: Sequence[IPNetwork], mark: int) -> tuple[Instruction, ...]:
    """The classic BPF program of the guard (ValueError past :data:`MAX_INSTRUCTIONS`)."""
    v4 = _ipv4_block([p for p in prefixes if isinstance(p, ipaddress.IPv4Network)])
    v6 = _ipv6_block([p for p in prefixes if isinstance(p, ipaddress.IPv6Network)])
    head = [
        Instruction(_LD_W_ABS, k=_SKF_AD_MARK),
        Instruction(_JMP_JSET_K, 0, 1, mark),
        _ret(TC_ACT_UNSPEC),
        Instruction(_LD_H_ABS, k=_ETHERTYPE),
        Instruction(_JMP_JEQ_K, 0, 1, _IPV4),
        Instruction(_JMP_JA, k=3),  # to the IPv4 block, after the next three
        Instruction(_JMP_JEQ_K, 0, 1, _IPV6),
        Instruction(_JMP_JA, k=1 + len(v4)),  # over the return and the IPv4 block
        _ret(TC_ACT_UNSPEC),
    ]
    program = (*head, *v4, *v6)
    if len(program) > MAX_INSTRUCTIONS:
        raise ValueError(
            f"the reset guard for {len(prefixes)} prefixes needs {len(program)} classic BPF "
            f"instructions (the kernel takes {MAX_INSTRUCTIONS}); aggregate the prefixes, "
            "or set rescue.reset_guard_mark: 0 to go without the guard"
        )
    return program


def bytecode(program: Sequence[Instruction]) -> str:
    """The program as ``tc ... bpf bytecode`` takes it and ``tc filter show`` prints it."""
    body = ",".join(f"{i.code} {i.jt} {i.jf} {i.k}" for i in program)
    return f"{len(program)},{body}"
