"""The listener watch's confirmation survives a dump it cannot read (issue 20).

Real listeners on loopback in this namespace, the real destroy subscription; only the
confirming dump of one port is made to fail as an unparsable kernel answer would.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from anycast_announcer.events.listeners import ListenerGone, ListenerWatch, ListenTarget
from anycast_announcer.events.netlink import NetlinkFormatError
from anycast_announcer.events.sockdiag import DiagSocket
from tests.integration.events.support import eventually

pytestmark = pytest.mark.integration


class _UnreadableFirstPort(ListenerWatch):
    """Its dumps of ``bad_port`` come back unparsable (what a kernel quirk would do)."""

    bad_port = 0

    async def listeners(self, port: int) -> list[DiagSocket]:
        if port == self.bad_port:
            raise NetlinkFormatError("truncated inet_diag_msg")
        return await super().listeners(port)


def _listen() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


async def test_an_unreadable_dump_does_not_drop_the_rest_of_the_batch() -> None:
    """Regression: only OSError was caught, so a parse error killed the confirmation
    task and every other target of its batch went unreported."""
    first, second = sorted((_listen(), _listen()), key=lambda s: s.getsockname()[1])
    targets = [
        ListenTarget(ipaddress.ip_address("127.0.0.1"), s.getsockname()[1]) for s in (first, second)
    ]
    gone: list[ListenerGone] = []
    watch = _UnreadableFirstPort(gone.append)
    watch.bad_port = targets[0].port  # the lower port: confirmed first
    try:
        async with watch:
            watch.watch(targets)
            first.close()
            second.close()
            await eventually(lambda: gone, "the second listener's close was never reported")
            assert gone == [ListenerGone(targets[1])]
            assert watch.counters.errors == 1
    finally:
        first.close()
        second.close()
