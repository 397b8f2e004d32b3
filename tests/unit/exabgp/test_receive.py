"""Parsing the UPDATEs ExaBGP's receive API reports: fed whole and one byte at a time.

The lines follow ExaBGP 5.0's JSON encoder (reactor/api/response/json.py); the
integration test ``tests/integration/rescue/test_membership.py`` reads real ones.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from hypothesis import given
from hypothesis import strategies as st

from anycast_announcer.exabgp.driver import ExabgpDriver
from anycast_announcer.exabgp.protocol import (
    Ack,
    ApiEvent,
    ApiReader,
    EndOfRib,
    ReceivedRoute,
    RoutesReceived,
    Unparsed,
    parse_line,
)
from anycast_announcer.exabgp.render import render_config
from tests.unit.core.helpers import config

HEAD = (
    '{ "exabgp": "5.0.0", "time": 1.0, "host" : "srv1", "pid" : 10, "ppid" : 1, '
    '"counter": 3, "type": "update", "neighbor": { "address": { "local": "10.2.1.2", '
    '"peer": "10.2.1.1" }, "asn": { "local": 65201, "peer": 65101 } , '
    '"direction": "receive", "message": '
)
ANNOUNCE = (
    HEAD + '{ "update": { "attribute": { "origin": "igp", "as-path": [ 65101, 65202 ], '
    '"confederation-path": [], "community": [ [ 65000, 4242 ], [ 65202, 100 ] ] }, '
    '"announce": { "ipv4 unicast": { "10.2.1.1": [ { "nlri": "10.2.2.2/32" }, '
    '{ "nlri": "10.2.3.2/32" } ] } } } } } }\n'
)
WITHDRAW = (
    HEAD + '{ "update": { "withdraw": { "ipv4 unicast": [ { "nlri": "10.2.2.2/32" } ] } } } } }\n'
)
EOR = HEAD + '{ "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }\n'
COMPACT = (
    HEAD + '{ "update": { "attribute": { "community": [ [ 65000, 4242 ] ] }, '
    '"announce": { "ipv4 unicast": { "10.2.1.1": [ "10.2.4.2/32" ] } }, '
    '"withdraw": { "ipv4 unicast": [ "10.2.9.2/32" ] } } } } }\n'
)
STREAM = (ANNOUNCE + "done\n" + WITHDRAW + EOR + COMPACT).encode()
MEMBER = ("65000:4242", "65202:100")
EXPECTED: list[ApiEvent] = [
    RoutesReceived(
        "10.2.1.1",
        (ReceivedRoute("10.2.2.2/32", MEMBER), ReceivedRoute("10.2.3.2/32", MEMBER)),
        (),
    ),
    Ack(True),
    RoutesReceived("10.2.1.1", (), ("10.2.2.2/32",)),
    EndOfRib("10.2.1.1", "ipv4 unicast"),
    RoutesReceived("10.2.1.1", (ReceivedRoute("10.2.4.2/32", ("65000:4242",)),), ("10.2.9.2/32",)),
]


class TestReceivedUpdates:
    def test_whole_stream(self) -> None:
        """Announcements with their communities, withdrawals and End-of-RIB, in order."""
        assert ApiReader().feed(STREAM) == EXPECTED

    def test_byte_by_byte(self) -> None:
        """The same events when every byte arrives on its own."""
        reader = ApiReader()
        events: list[ApiEvent] = []
        for byte in STREAM:
            events += reader.feed(bytes([byte]))
        assert events == EXPECTED

    def test_sent_updates_are_not_received_routes(self) -> None:
        """``direction: send`` (our own announcements, if ever echoed) is not learnt."""
        sent = ANNOUNCE.replace('"direction": "receive"', '"direction": "send"')
        assert isinstance(parse_line(sent.strip()), Unparsed)

    def test_malformed_communities_are_left_out(self) -> None:
        """A community that is not two integers is dropped, the route kept."""
        odd = ANNOUNCE.replace("[ 65202, 100 ]", '[ "x", true ]')
        event = parse_line(odd.strip())
        assert isinstance(event, RoutesReceived)
        assert event.announced[0].communities == ("65000:4242",)

    def test_update_without_routes_is_unparsed(self) -> None:
        """An UPDATE with attributes only carries nothing to act on."""
        empty = HEAD + '{ "update": { "attribute": { "origin": "igp" } } } } }'
        assert isinstance(parse_line(empty), Unparsed)

    @given(st.binary(max_size=300))
    def test_any_bytes_parse_or_become_unparsed(self, data: bytes) -> None:
        """A peer's garbage never raises: every line is an event or Unparsed."""
        for event in ApiReader().feed(data + b"\n"):
            assert event is not None

    @given(st.integers(min_value=1, max_value=len(ANNOUNCE) - 2))
    def test_truncated_lines_never_raise(self, cut: int) -> None:
        """A line cut anywhere is Unparsed, not an exception."""
        assert isinstance(parse_line(ANNOUNCE[:cut]), Unparsed | type(None))


class TestReceiveConfig:
    def test_receive_block_only_when_asked(self) -> None:
        """ExaBGP reports received UPDATEs only with rescue membership."""
        bgp = config().bgp
        assert "receive" not in render_config(bgp, ["relay"])
        rendered = render_config(bgp, ["relay"], receive_routes=True)
        assert "api { processes [ anycast-announcer ]; neighbor-changes; " in rendered
        assert "receive { parsed; update; } }" in rendered

    def test_graceful_restart_advertised_only_to_receive_end_of_rib(self) -> None:
        """FRR sends End-of-RIB only to a peer that advertised graceful restart: with
        membership (the start-up gate waits for it) the capability goes out, with the
        least restart time; without, nothing changes (a leaf in helper mode would keep
        a lost server's routes for that long)."""
        bgp = config().bgp
        assert "graceful-restart" not in render_config(bgp, ["relay"], receive_routes=True)
        rendered = render_config(bgp, ["relay"], receive_routes=True, end_of_rib=True)
        assert rendered.count("    capability { graceful-restart 1; }\n") == len(bgp.peers)


class TestDriverPassesEndOfRib:
    """The driver's reader hands End-of-RIB markers to the supervisor (the start-up gate),
    beside the UPDATEs, in order, however the bytes arrive."""

    @staticmethod
    async def _received(chunks: list[bytes]) -> list[tuple[str, ...]]:
        seen: list[tuple[str, ...]] = []
        settings = config().exabgp
        driver = ExabgpDriver(
            config().bgp,
            settings,
            lambda peer, up, reason: seen.append(("session", peer, str(up))),
            on_routes=lambda peer, announced, withdrawn: seen.append(
                ("routes", peer, *(prefix for prefix, _ in announced), *withdrawn)
            ),
            on_end_of_rib=lambda peer, family: seen.append(("eor", peer, family)),
        )
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        await asyncio.wait_for(driver._receive(reader), 5)  # the reader alone, no process
        return seen

    EXPECTED: ClassVar[list[tuple[str, ...]]] = [
        ("routes", "10.2.1.1", "10.2.2.2/32", "10.2.3.2/32"),
        ("routes", "10.2.1.1", "10.2.2.2/32"),
        ("eor", "10.2.1.1", "ipv4 unicast"),
        ("routes", "10.2.1.1", "10.2.4.2/32", "10.2.9.2/32"),
    ]

    async def test_whole(self) -> None:
        assert await self._received([(ANNOUNCE + WITHDRAW + EOR + COMPACT).encode()]) == (
            self.EXPECTED
        )

    async def test_byte_by_byte(self) -> None:
        stream = (ANNOUNCE + WITHDRAW + EOR + COMPACT).encode()
        assert await self._received([bytes([b]) for b in stream]) == self.EXPECTED

    async def test_an_ipv6_peer_is_normalised(self) -> None:
        """ExaBGP may spell an address differently from the config; the core compares."""
        long_form = EOR.replace('"peer": "10.2.1.1"', '"peer": "fd00:0:0::1"')
        assert await self._received([long_form.encode()]) == [("eor", "fd00::1", "ipv4 unicast")]
