"""The rescue scale lab: one rescue group of N members behind several leaves, generated.

``containerlab/rescue64`` is this module's output for 4 leaves x 16 members; the
benchmark (``tests.benchmarks.scale``) writes smaller variants (N = 16: 2 x 8; the smoke
test's 2 x 4) into a temporary folder from the same code, so every size runs the same
fabric. Regenerate the committed lab after a change here::

    python -m tests.benchmarks.scalelab containerlab/rescue64 4 16

The shape (N = 64)::

                              spine1 (AS 65000) ---- client 10.3.0.2, fd00:3::2
                 eth1 /      eth2 |      eth3 |      \\ eth4
        leaf1 (65101)     leaf2 (65102)  leaf3 (65103)  leaf4 (65104)
        m1 .. m16         m17 .. m32     m33 .. m48     m49 .. m64
        sidecars          data path only (rescue install), routes by the leaf

- **leaf1's members run real sidecars** (started by the benchmark, not by the lab):
  each announces the anycast prefixes and its member route over eBGP and learns the group
  from the fabric (``rescue.membership``).
- **The other leaves' members are data-path-only** (``anycast-announcer rescue
  install`` with the whole group as static ``members:``): their leaf routes the anycast
  prefixes to them with static routes (staticd, one ECMP route per family) and
  originates them and their member routes into BGP (``RESCUE-ORIGINATE``,
  docs/leaf.md), so the fabric hashes flows to them and every sidecar learns them.
- A leaf is all one kind: zebra prefers a static route (distance 1) to an eBGP one (20),
  so a leaf mixing both would send nothing to its sidecars.

Addresses: member g (1..N) has the link 10.2.g.0/24 and fd00:2:g::/64 (leaf .1 / ::1,
member .2 / ::2), its member route is 10.254.g.2/32 and, on leaf1, its AS 65200 + g;
leaf L's uplink is 10.1.L.0/24 and fd00:1:L::/64 (spine .1 / ::1); the client's link
10.3.0.0/24 and fd00:3::/64. Every member owns 10.255.0.1/32 and fd00:255::1/128 on lo.
Every router hashes flows over addresses, protocol and ports with its own seed (one
seed for both families: ``net.ipv4.fib_multipath_hash_seed`` serves IPv6 too), and the
fabric runs an MTU of 9000 (a rescued packet carries VXLAN's 50 bytes more); the
client's link stays at 1500.

**Dual stack, IPv4 underlay.** The group is its members' IPv4 addresses: rescue
carries a moved IPv6 packet in VXLAN over the IPv4 underlay as it does an IPv4 one
(the rescue lab, tests/integration/rescue, does the same), and member routes are IPv4
only. The IPv6 anycast prefix travels as the IPv4 one does, on IPv6 sessions of its
own (a sidecar announces a prefix only to peers of its family): a leaf1 sidecar peers
with leaf1 over both families, each leaf with the spine over both; a data-path-only
leaf routes fd00:255::1/128 to its members with static routes and originates it.
Global IPv6 addresses skip DAD (``nodad``) so they are usable at once.

``maximum-paths``: 64 everywhere (the spine needs one path per leaf, a leaf one per
member). Debian's FRR 8.4 is built with MULTIPATH_NUM = 256 (``maximum-paths (1-256)``
in bgpd), and zebra installs as many as that.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ANYCAST = "10.255.0.1"
ANYCAST6 = "fd00:255::1"
ANYCASTS = {4: ANYCAST, 6: ANYCAST6}
"""The anycast address of each family."""
PREFIX_LENGTH = {4: 32, 6: 128}
COMMUNITY = "65000:4242"
SPINE_AS = 65000
CLIENT = "10.3.0.2"
CLIENT6 = "fd00:3::2"
MAXIMUM_PATHS = 64
_FORWARD = "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"
_HASH = (
    "sysctl -qw net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=0x0037"
    " net.ipv6.fib_multipath_hash_policy=3 net.ipv6.fib_multipath_hash_fields=0x0037"
)
_DAEMONS = """\
# Which FRR daemons run on {node}; zebra always runs. Read by anycast-netlab.
bgpd=yes
staticd={staticd}
ospfd=no
ospf6d=no
bfdd=no
vtysh_enable=yes
"""


@dataclass(frozen=True, slots=True)
class ScaleLab:
    """``leaves`` leaves of ``per_leaf`` members each; leaf1's members run sidecars."""

    leaves: int
    per_leaf: int

    @property
    def members(self) -> int:
        return self.leaves * self.per_leaf

    @property
    def name(self) -> str:
        return f"rescue{self.members}"

    def leaf_of(self, member: int) -> int:
        return (member - 1) // self.per_leaf + 1

    def on_leaf(self, leaf: int) -> range:
        return range((leaf - 1) * self.per_leaf + 1, leaf * self.per_leaf + 1)

    def has_sidecar(self, member: int) -> bool:
        return self.leaf_of(member) == 1

    @property
    def sidecars(self) -> list[int]:
        return list(self.on_leaf(1))

    @property
    def data_path_only(self) -> list[int]:
        return [g for g in range(1, self.members + 1) if not self.has_sidecar(g)]


def member_address(member: int) -> str:
    """The member's underlay address (its end of its leaf link)."""
    return f"10.2.{member}.2"


def member_address6(member: int) -> str:
    """The member's IPv6 address on its leaf link (its IPv6 BGP session's end)."""
    return f"fd00:2:{member}::2"


def leaf_address6(member: int) -> str:
    """The leaf's IPv6 end of the member's link: its IPv6 peer and default route."""
    return f"fd00:2:{member}::1"


def member_route(member: int) -> str:
    """The member route announced for it (docs/rescue.md, ``route_prefixes``)."""
    return f"10.254.{member}.2/32"


def member_as(member: int) -> int:
    return 65200 + member


def leaf_as(leaf: int) -> int:
    return 65100 + leaf


def leaf_address(member: int) -> str:
    """The leaf's end of the member's link: the member's BGP peer and default route."""
    return f"10.2.{member}.1"


def _topology(lab: ScaleLab) -> str:
    lines = [
        f"# Rescue scale lab: one rescue group of {lab.members} members behind {lab.leaves}",
        f"# leaves of {lab.per_leaf}, one spine, a client on the spine. Generated by",
        "# tests/benchmarks/scalelab.py (read its docstring for the plan); do not edit.",
        f"# leaf1's members (m1..m{lab.per_leaf}) run sidecars; the others are data-path-only.",
        "#",
        f"#   sudo .venv/bin/anycast-netlab deploy -t containerlab/{lab.name}/{lab.name}.clab.yml",
        f"name: {lab.name}",
        "",
        "topology:",
        "  defaults:",
        "    kind: linux",
        "  nodes:",
        "    spine1:",
        "      image: quay.io/frrouting/frr:8.4.1",
        "      binds:",
        "        - spine1/frr.conf:/etc/frr/frr.conf",
        "        - spine1/daemons:/etc/frr/daemons",
        "      exec:",
    ]
    for port in range(1, lab.leaves + 1):
        lines.append(f"        - ip link set eth{port} mtu 9000")
    lines += [
        f"        - {_FORWARD}",
        f"        - {_HASH}",
        "        - sysctl -qw net.ipv4.fib_multipath_hash_seed=3001",
    ]
    for leaf in range(1, lab.leaves + 1):
        lines += [
            f"        - ip addr add 10.1.{leaf}.1/24 dev eth{leaf}",
            f"        - ip addr add fd00:1:{leaf}::1/64 dev eth{leaf} nodad",
        ]
    lines += [
        f"        - ip addr add 10.3.0.1/24 dev eth{lab.leaves + 1}",
        f"        - ip addr add fd00:3::1/64 dev eth{lab.leaves + 1} nodad",
    ]
    for leaf in range(1, lab.leaves + 1):
        lines += [
            f"    leaf{leaf}:",
            "      image: quay.io/frrouting/frr:8.4.1",
            "      binds:",
            f"        - leaf{leaf}/frr.conf:/etc/frr/frr.conf",
            f"        - leaf{leaf}/daemons:/etc/frr/daemons",
            "      exec:",
            "        - ip link set eth1 mtu 9000",
        ]
        for port, _ in enumerate(lab.on_leaf(leaf), start=2):
            lines.append(f"        - ip link set eth{port} mtu 9000")
        lines += [
            f"        - {_FORWARD}",
            f"        - {_HASH}",
            f"        - sysctl -qw net.ipv4.fib_multipath_hash_seed={3100 + leaf}",
            f"        - ip addr add 10.1.{leaf}.2/24 dev eth1",
            f"        - ip addr add fd00:1:{leaf}::2/64 dev eth1 nodad",
        ]
        for port, member in enumerate(lab.on_leaf(leaf), start=2):
            lines += [
                f"        - ip addr add {leaf_address(member)}/24 dev eth{port}",
                f"        - ip addr add {leaf_address6(member)}/64 dev eth{port} nodad",
            ]
    for member in range(1, lab.members + 1):
        lines += [
            f"    m{member}:",
            "      image: anycast-announcer:latest",
            "      exec:",
            "        - ip link set eth1 mtu 9000",
            f"        - ip addr add {member_address(member)}/24 dev eth1",
            f"        - ip addr add {member_address6(member)}/64 dev eth1 nodad",
            f"        - ip addr add {ANYCAST}/32 dev lo",
            f"        - ip addr add {ANYCAST6}/128 dev lo",
            f"        - ip route replace default via {leaf_address(member)}",
            f"        - ip -6 route replace default via {leaf_address6(member)}",
        ]
    lines += [
        "    client:",
        "      image: alpine:3",
        "      exec:",
        f"        - ip addr add {CLIENT}/24 dev eth1",
        f"        - ip addr add {CLIENT6}/64 dev eth1 nodad",
        "        - ip route replace default via 10.3.0.1",
        "        - ip -6 route replace default via fd00:3::1",
        "",
        "  links:",
    ]
    for leaf in range(1, lab.leaves + 1):
        lines.append(f'    - endpoints: ["spine1:eth{leaf}", "leaf{leaf}:eth1"]')
    lines.append(f'    - endpoints: ["spine1:eth{lab.leaves + 1}", "client:eth1"]')
    for leaf in range(1, lab.leaves + 1):
        for port, member in enumerate(lab.on_leaf(leaf), start=2):
            lines.append(f'    - endpoints: ["leaf{leaf}:eth{port}", "m{member}:eth1"]')
    return "\n".join(lines) + "\n"


def _spine(lab: ScaleLab) -> str:
    lines = [
        "! spine1 of the rescue scale lab: one path per leaf, plain ECMP (the data-path-only",
        "! leaves send no link bandwidth, and with paths with and without it FRR falls back",
        "! to equal weights; every leaf holds the same number of members).",
        "frr version 8.4",
        "frr defaults traditional",
        "hostname spine1",
        "log stdout informational",
        "no zebra nexthop kernel enable",
        "!",
        f"router bgp {SPINE_AS}",
        " bgp router-id 10.1.1.1",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " bgp bestpath as-path multipath-relax",
        " timers bgp 1 3",
    ]
    for leaf in range(1, lab.leaves + 1):
        for peer in (f"10.1.{leaf}.2", f"fd00:1:{leaf}::2"):
            lines += [
                f" neighbor {peer} remote-as {leaf_as(leaf)}",
                f" neighbor {peer} timers connect 1",
                f" neighbor {peer} advertisement-interval 0",
            ]
    for afi, client_net, peer in (
        ("ipv4", "10.3.0.0/24", "10.1.{}.2"),
        ("ipv6", "fd00:3::/64", "fd00:1:{}::2"),
    ):
        lines += [" !", f" address-family {afi} unicast", f"  network {client_net}"]
        lines += [f"  neighbor {peer.format(leaf)} activate" for leaf in range(1, lab.leaves + 1)]
        lines += [f"  maximum-paths {MAXIMUM_PATHS}", " exit-address-family"]
    lines += ["exit", "!"]
    return "\n".join(lines) + "\n"


def _leaf_head(leaf: int, static: list[str] | None = None) -> list[str]:
    # Static routes first: every daemon reads the whole file, and staticd leaves
    # configuration mode at the first 'exit' after a block it does not know (a
    # route-map), so it never saw routes placed after one.
    return [
        "frr version 8.4",
        "frr defaults traditional",
        f"hostname leaf{leaf}",
        "log stdout informational",
        "no zebra nexthop kernel enable",
        "!",
        *(static or []),
        "!",
        f"bgp community-list standard RESCUE-GROUP seq 10 permit {COMMUNITY}",
        "ip prefix-list RESCUE-MEMBERS seq 10 permit 10.254.0.0/16 ge 32",
        "route-map RESCUE-ORIGINATE permit 10",
        f" set community {COMMUNITY}",
        "exit",
    ]


def _leaf_router(
    lab: ScaleLab, leaf: int, neighbors: list[str], af: list[str], af6: list[str]
) -> list[str]:
    lines = [
        f"router bgp {leaf_as(leaf)}",
        f" bgp router-id 10.1.{leaf}.2",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        " bgp bestpath as-path multipath-relax",
        " timers bgp 1 3",
        f" neighbor 10.1.{leaf}.1 remote-as {SPINE_AS}",
        f" neighbor 10.1.{leaf}.1 timers connect 1",
        f" neighbor 10.1.{leaf}.1 advertisement-interval 0",
        f" neighbor fd00:1:{leaf}::1 remote-as {SPINE_AS}",
        f" neighbor fd00:1:{leaf}::1 timers connect 1",
        f" neighbor fd00:1:{leaf}::1 advertisement-interval 0",
        *neighbors,
        " !",
        " address-family ipv4 unicast",
    ]
    # The member subnets: the underlay the members reach each other through.
    lines += [f"  network 10.2.{member}.0/24" for member in lab.on_leaf(leaf)]
    lines += [
        *af,
        f"  neighbor 10.1.{leaf}.1 activate",
        f"  maximum-paths {MAXIMUM_PATHS}",
        " exit-address-family",
        " !",
        # Only the anycast prefix: the underlay the members reach each other through is
        # IPv4, so their IPv6 subnets stay on the leaf.
        " address-family ipv6 unicast",
        *af6,
        f"  neighbor fd00:1:{leaf}::1 activate",
        f"  maximum-paths {MAXIMUM_PATHS}",
        " exit-address-family",
        "exit",
        "!",
    ]
    return lines


def _sidecar_leaf(lab: ScaleLab, leaf: int) -> str:
    lines = [
        f"! leaf{leaf} of the rescue scale lab: its members run sidecars, which announce the",
        "! anycast prefixes (IPv4 and IPv6, one session each) and their member route",
        "! (docs/leaf.md, 'Rescue member routes').",
        *_leaf_head(leaf),
    ]
    for member in lab.on_leaf(leaf):
        lines += [
            f"ip prefix-list M{member}-IN seq 10 permit {ANYCAST}/32",
            f"ip prefix-list M{member}-IN seq 20 permit {member_route(member)}",
        ]
    lines += [
        f"ipv6 prefix-list ANYCAST6-IN seq 10 permit {ANYCAST6}/128",
        "route-map SERVERS-OUT permit 10",
        " match ip address prefix-list RESCUE-MEMBERS",
        " match community RESCUE-GROUP",
        "exit",
        "route-map SERVERS-OUT deny 20",
        "exit",
        # Member routes are IPv4: the IPv6 sessions carry nothing to the servers.
        "route-map SERVERS-OUT6 deny 10",
        "exit",
        "!",
    ]
    neighbors, af, af6 = [], [], []
    for member in lab.on_leaf(leaf):
        for peer in (member_address(member), member_address6(member)):
            neighbors += [
                f" neighbor {peer} remote-as {member_as(member)}",
                f" neighbor {peer} timers 3 9",
                f" neighbor {peer} timers connect 1",
                f" neighbor {peer} advertisement-interval 0",
            ]
        peer, peer6 = member_address(member), member_address6(member)
        af += [
            f"  neighbor {peer} activate",
            f"  neighbor {peer} prefix-list M{member}-IN in",
            f"  neighbor {peer} route-map SERVERS-OUT out",
        ]
        af6 += [
            f"  neighbor {peer6} activate",
            f"  neighbor {peer6} prefix-list ANYCAST6-IN in",
            f"  neighbor {peer6} route-map SERVERS-OUT6 out",
        ]
    return "\n".join(lines + _leaf_router(lab, leaf, neighbors, af, af6)) + "\n"


def _static_leaf(lab: ScaleLab, leaf: int) -> str:
    lines = [
        f"! leaf{leaf} of the rescue scale lab: its members are data-path-only (rescue install,",
        "! no BGP). The leaf routes the anycast prefixes to them (one static ECMP route",
        "! per family) and originates them and their member routes (RESCUE-ORIGINATE,",
        "! docs/leaf.md).",
        *_leaf_head(
            leaf,
            [f"ip route {ANYCAST}/32 {member_address(m)}" for m in lab.on_leaf(leaf)]
            + [f"ipv6 route {ANYCAST6}/128 {member_address6(m)}" for m in lab.on_leaf(leaf)],
        ),
        # As long an AS path as a sidecar leaf's (leaf, server): the spine only spreads
        # over paths of equal length.
        "route-map ANYCAST-ORIGINATE permit 10",
        f" set as-path prepend {leaf_as(leaf)}",
        "exit",
        "!",
    ]
    af = [f"  network {ANYCAST}/32 route-map ANYCAST-ORIGINATE"]
    af += [f"  network {member_route(m)} route-map RESCUE-ORIGINATE" for m in lab.on_leaf(leaf)]
    af6 = [f"  network {ANYCAST6}/128 route-map ANYCAST-ORIGINATE"]
    router = _leaf_router(lab, leaf, [" no bgp network import-check"], af, af6)
    return "\n".join(lines + router) + "\n"


def write(lab: ScaleLab, folder: Path) -> Path:
    """Write the lab's topology and router configs into ``folder``; the topology path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        f"{lab.name}.clab.yml": _topology(lab),
        "spine1/frr.conf": _spine(lab),
        "spine1/daemons": _DAEMONS.format(node="spine1", staticd="no"),
    }
    for leaf in range(1, lab.leaves + 1):
        sidecars = leaf == 1
        files[f"leaf{leaf}/frr.conf"] = (
            _sidecar_leaf(lab, leaf) if sidecars else _static_leaf(lab, leaf)
        )
        files[f"leaf{leaf}/daemons"] = _DAEMONS.format(
            node=f"leaf{leaf}", staticd="no" if sidecars else "yes"
        )
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
    return folder / f"{lab.name}.clab.yml"


def main() -> int:
    """``python -m tests.benchmarks.scalelab FOLDER LEAVES PER_LEAF``."""
    folder, leaves, per_leaf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(write(ScaleLab(leaves, per_leaf), Path(folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
