"""sock_diag codec, the kernel filter program and the "who serves this target" rule."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.events.sockdiag import (
    MAX_FILTER_PORTS,
    DiagSocket,
    ListenTarget,
    destroy_filter,
    listen_request,
    pack_filter,
    parse_diag,
    relevant,
    serves,
)
from tests.unit.events.diagmsg import datagram, diag_payload

V4 = ListenTarget(ipaddress.ip_address("10.255.0.1"), 8080)
V6 = ListenTarget(ipaddress.ip_address("fd00:255::1"), 8080)


def run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """A classic BPF interpreter for the instructions destroy_filter emits.

    Loads are big-endian from absolute offsets, as the kernel does; an out-of-range
    load drops the packet, as the kernel does.
    """
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code in (0x20, 0x28):  # ld w / ld h, absolute
            size = 4 if code == 0x20 else 2
            if k + size > len(packet):
                return 0
            acc = int.from_bytes(packet[k : k + size], "big")
            pc += 1
        elif code == 0x15:  # jeq k
            pc += 1 + (jt if acc == k else jf)
        elif code == 0x06:  # ret k
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


class TestParse:
    def test_destroyed_listener(self) -> None:
        """The fields of a destroy message for an IPv4 listener, decoded."""
        sock = parse_diag(diag_payload("10.255.0.1", 8080))
        assert sock == DiagSocket(
            family=socket.AF_INET,
            state=7,
            address=ipaddress.ip_address("10.255.0.1"),
            port=8080,
            peer=ipaddress.ip_address("0.0.0.0"),
            peer_port=0,
            interface=0,
            v6only=None,
        )

    def test_ipv6_dump_entry_carries_v6only(self) -> None:
        """INET_DIAG_SKV6ONLY is read from the attributes."""
        sock = parse_diag(diag_payload("::", 443, state=10, v6only=True))
        assert (sock.family, sock.address, sock.state, sock.v6only) == (
            socket.AF_INET6,
            ipaddress.ip_address("::"),
            10,
            True,
        )

    def test_short_payload_is_rejected(self) -> None:
        """Fewer bytes than an inet_diag_msg."""
        with pytest.raises(ValueError, match="inet_diag_msg"):
            parse_diag(bytes(40))


def test_listen_request_layout() -> None:
    """inet_diag_req_v2: family, TCP, LISTEN only, the port in id.sport, no cookie."""
    request = listen_request(socket.AF_INET6, 8080)
    assert len(request) == 56
    family, proto, ext, _, states = struct.unpack_from("=BBBBI", request)
    assert (family, proto, ext, states) == (socket.AF_INET6, socket.IPPROTO_TCP, 0, 1 << 10)
    assert struct.unpack_from("!HH", request, 8) == (8080, 0)
    assert request[-8:] == b"\xff" * 8  # INET_DIAG_NOCOOKIE


class TestFilter:
    def test_passes_a_destroyed_listener_on_a_watched_port(self) -> None:
        """IPv4 and IPv6 listeners on a watched port reach user space."""
        program = destroy_filter([8080, 9090])
        assert run_bpf(program, datagram(diag_payload("10.255.0.1", 8080))) != 0
        assert run_bpf(program, datagram(diag_payload("::", 9090))) != 0

    def test_drops_connections_and_other_ports(self) -> None:
        """An accepted connection, one aborted with SO_LINGER 0 (port lost, peer kept),
        and a listener on another port are all dropped in the kernel."""
        program = destroy_filter([8080])
        assert run_bpf(program, datagram(diag_payload("10.255.0.1", 8080, "10.0.9.2", 41000))) == 0
        assert run_bpf(program, datagram(diag_payload("10.255.0.1", 8080, "10.0.9.2", 0))) == 0
        assert run_bpf(program, datagram(diag_payload("fd00::1", 8080, "fd00:9::2", 0))) == 0
        assert run_bpf(program, datagram(diag_payload("10.255.0.1", 8081))) == 0

    def test_no_ports_drops_everything(self) -> None:
        """An empty watch set lets nothing through."""
        assert run_bpf(destroy_filter([]), datagram(diag_payload("10.255.0.1", 8080))) == 0

    @given(
        ports=st.sets(st.integers(1, 65535), max_size=20),
        port=st.integers(0, 65535),
        peer_port=st.sampled_from([0, 1, 40000, 65535]),
        peer=st.sampled_from([None, "10.0.9.2", "0.0.0.1", "128.0.0.0"]),
    )
    def test_accepts_exactly_listener_like_sockets_on_watched_ports(
        self, ports: set[int], port: int, peer_port: int, peer: str | None
    ) -> None:
        """The program's verdict equals the rule it implements, for any message."""
        packet = datagram(diag_payload("10.255.0.1", port, peer, peer_port))
        expected = port in ports and peer_port == 0 and peer in (None, "0.0.0.0")
        assert (run_bpf(destroy_filter(ports), packet) != 0) == expected

    def test_size_limit(self) -> None:
        """Beyond BPF_MAXINSNS the program is refused with a message, not by the kernel."""
        assert len(destroy_filter(range(1, MAX_FILTER_PORTS + 1))) <= 4096
        with pytest.raises(ValueError, match="at most"):
            destroy_filter(range(1, MAX_FILTER_PORTS + 2))

    def test_packs_as_struct_sock_filter(self) -> None:
        """8 bytes an instruction: u16 code, u8 jt, u8 jf, u32 k (host order)."""
        packed = pack_filter([(0x15, 1, 2, 8080)])
        assert packed == struct.pack("=HBBI", 0x15, 1, 2, 8080)


def listener(address: str, port: int = 8080, v6only: bool | None = False) -> DiagSocket:
    """A LISTEN socket as a dump reports it."""
    return parse_diag(diag_payload(address, port, state=10, v6only=v6only))


@pytest.mark.parametrize(
    ("sock", "target", "expected"),
    [
        (listener("10.255.0.1"), V4, True),
        (listener("0.0.0.0"), V4, True),
        (listener("10.0.0.1"), V4, False),
        (listener("10.255.0.1", 8081), V4, False),
        (listener("::"), V4, True),  # dual-stack wildcard
        (listener("::", v6only=True), V4, False),
        (listener("::ffff:10.255.0.1"), V4, True),
        (listener("::ffff:10.0.0.1"), V4, False),
        (listener("fd00:255::1"), V4, False),
        (listener("fd00:255::1"), V6, True),
        (listener("::", v6only=True), V6, True),
        (listener("0.0.0.0"), V6, False),
        (listener("fd00:255::2"), V6, False),
    ],
)
def test_serves(sock: DiagSocket, target: ListenTarget, expected: bool) -> None:
    """Specific address, family wildcard, dual-stack and v4-mapped IPv6 sockets."""
    assert serves(sock, target) is expected


def test_relevant_assumes_a_destroyed_ipv6_wildcard_was_dual_stack() -> None:
    """Destroy messages carry no v6only: an IPv6 wildcard may have served IPv4 targets."""
    destroyed = parse_diag(diag_payload("::", 8080))
    other = ListenTarget(ipaddress.ip_address("10.255.0.2"), 9090)
    assert relevant(destroyed, [V4, V6, other]) == {V4, V6}


def test_target_port_range() -> None:
    """Port 0 is no target."""
    with pytest.raises(ValueError, match="port"):
        ListenTarget(ipaddress.ip_address("10.255.0.1"), 0)
