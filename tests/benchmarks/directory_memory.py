"""Kernel memory of the flow directory's sets: 100,000 flows, measured (docs/rescue.md).

Each case fills one flow set of the data path's type in a scratch namespace and reads
which slab caches grew (``/proc/slabinfo``: objects x object size), so the figure is the
kernel's own allocation, not an estimate:

- ``packet_add``: elements added from the packet path, as ``registered``, ``asked``,
  ``queried`` and ``dir_<peer>`` are (100,000 TCP packets of distinct flows sent through
  a veth into a namespace whose rule does ``add @s { flow }``);
- ``packet_limiter``: the same with ``update @s { flow limit rate over 1/minute burst 1
  packets }``, the per-flow limiter pattern (``fed_<peer>``), for comparison;
- ``command_ipv6``: IPv6 flows added with ``nft add element``, for the key size.

The set's hash bucket array is allocated with kvmalloc (vmalloc at this size) and not
counted: 8 bytes a bucket, 1 to 2 MiB at 100,000 elements. Other processes allocate too,
so each case reports its largest growing caches; the set's shows as the one that grew by
about ``elements x object size``.

Run as root: ``python -m tests.benchmarks.directory_memory [--out FILE]``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

FLOWS = 100_000
FLOW4 = "ip saddr . tcp sport . ip daddr . tcp dport"
OUT = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "directory-memory.json"

SENDER = """
import socket, struct, sys
count = int(sys.argv[1])
sockets = []
for source in ("10.77.0.1", "10.77.0.3"):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.bind((source, 0))
    sockets.append(s)
for i in range(count):
    # An ACK of flow (source, 1024 + i % 60000) -> 10.77.0.2:443; the rule drops it.
    header = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, 1, 5 << 4, 0x10, 1024, 0, 0)
    sockets[i // 60000].sendto(header, ("10.77.0.2", 0))
"""


def _caches() -> dict[str, int]:
    sizes = {}
    with open("/proc/slabinfo", encoding="ascii") as slabinfo:
        for line in slabinfo.readlines()[2:]:
            fields = line.split()
            sizes[fields[0]] = int(fields[1]) * int(fields[3])  # active objects x size
    return sizes


def _run(*argv: str, text: str | None = None) -> str:
    done = subprocess.run(argv, input=text, capture_output=True, text=True, check=True)
    return done.stdout


def _nft(namespace: str, script: str) -> None:
    _run("ip", "netns", "exec", namespace, "nft", "-f", "-", text=script)


def _growth(before: dict[str, int], after: dict[str, int]) -> list[tuple[str, int]]:
    grown = sorted(((after.get(k, 0) - before.get(k, 0), k) for k in after), reverse=True)
    return [(name, delta) for delta, name in grown[:3]]


def _packet_case(statement: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    source, sink = f"rxms{tag}", f"rxmd{tag}"
    _run("ip", "netns", "add", source)
    _run("ip", "netns", "add", sink)
    try:
        _run("ip", "-n", source, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        _run("ip", "-n", source, "link", "set", "vb", "netns", sink)
        for address in ("10.77.0.1/24", "10.77.0.3/24"):
            _run("ip", "-n", source, "addr", "add", address, "dev", "va")
        _run("ip", "-n", sink, "addr", "add", "10.77.0.2/24", "dev", "vb")
        _run("ip", "-n", source, "link", "set", "va", "up")
        _run("ip", "-n", sink, "link", "set", "vb", "up")
        mac = _run("ip", "netns", "exec", sink, "cat", "/sys/class/net/vb/address").strip()
        _run("ip", "-n", source, "neigh", "replace", "10.77.0.2", "lladdr", mac, "dev", "va")
        _nft(
            sink,
            "table ip t {\n"
            "  set s { type ipv4_addr . inet_service . ipv4_addr . inet_service; "
            f"flags dynamic,timeout; timeout 120s; size {2 * FLOWS}; }}\n"
            "  chain pre { type filter hook prerouting priority -150; policy accept;\n"
            f"    tcp dport 443 {statement} drop\n    tcp dport 443 drop\n  }}\n}}\n",
        )
        time.sleep(0.5)
        before = _caches()
        _run("ip", "netns", "exec", source, "python3", "-c", SENDER, str(FLOWS))
        time.sleep(1)
        after = _caches()
        listed = _run("ip", "netns", "exec", sink, "nft", "list", "set", "ip", "t", "s")
        return {
            "elements": len(re.findall(r"\. 443\b", listed)),
            "top_growth": _growth(before, after),
        }
    finally:
        _run("ip", "netns", "del", source)
        _run("ip", "netns", "del", sink)


def _command_ipv6() -> dict[str, Any]:
    namespace = f"rxm6{uuid.uuid4().hex[:6]}"
    _run("ip", "netns", "add", namespace)
    try:
        _nft(
            namespace,
            "table ip6 t {\n  set s { type ipv6_addr . inet_service . ipv6_addr . "
            f"inet_service; flags dynamic,timeout; timeout 120s; size {2 * FLOWS}; }}\n}}\n",
        )
        base = ipaddress.IPv6Address("fd00:64::")
        lines = [
            f"add element ip6 t s {{ {base + i} . {1024 + i % 60000} . fd00:255::1 . 443 }}"
            for i in range(FLOWS)
        ]
        time.sleep(0.5)
        before = _caches()
        for start in range(0, FLOWS, 20_000):
            _nft(namespace, "\n".join(lines[start : start + 20_000]) + "\n")
        time.sleep(0.5)
        after = _caches()
        listed = _run("ip", "netns", "exec", namespace, "nft", "list", "set", "ip6", "t", "s")
        return {
            "elements": len(re.findall(r"\. 443\b", listed)),
            "top_growth": _growth(before, after),
        }
    finally:
        _run("ip", "netns", "del", namespace)


def measure() -> dict[str, Any]:
    """Every case, with the flows it was asked for."""
    return {
        "flows": FLOWS,
        "packet_add": _packet_case(f"add @s {{ {FLOW4} }}"),
        "packet_limiter": _packet_case(
            f"update @s {{ {FLOW4} limit rate over 1/minute burst 1 packets }}"
        ),
        "command_ipv6": _command_ipv6(),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and write the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    figures = measure()
    args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
