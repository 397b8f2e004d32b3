"""More listener targets than the kernel filter holds: the lowest ports are watched, the
rest are left to their probes, and the watch accepts the result (real netlink sockets)."""

from __future__ import annotations

import asyncio
import ipaddress

from anycast_announcer.events.listeners import ListenerWatch
from anycast_announcer.events.sockdiag import MAX_FILTER_PORTS, ListenTarget
from anycast_announcer.workers.detection import watchable

LOCAL = ipaddress.ip_address("127.0.0.1")


def targets(count: int, first: int = 20000) -> dict[ListenTarget, tuple[str, ...]]:
    return {ListenTarget(LOCAL, first + i): (f"svc{i}",) for i in range(count)}


def test_within_the_limit_everything_is_watched() -> None:
    wanted = targets(3)
    assert watchable(wanted, max_ports=3) == (wanted, [])


def test_over_the_limit_the_lowest_ports_are_watched_and_the_rest_named() -> None:
    wanted = targets(5)
    wanted[ListenTarget(ipaddress.ip_address("::1"), 20000)] = ("v6a", "v6b")
    watched, unwatched = watchable(wanted, max_ports=2)
    assert {t.port for t in watched} == {20000, 20001}
    assert watched[ListenTarget(ipaddress.ip_address("::1"), 20000)] == ("v6a", "v6b")
    assert unwatched == ["svc2", "svc3", "svc4"]


def test_the_watch_takes_what_watchable_keeps_beyond_the_filter_limit() -> None:
    """Without the cap the watch refuses the program (the sidecar used to die at start)."""

    async def main() -> int:
        async with ListenerWatch(lambda event: None) as watch:
            watched, unwatched = watchable(targets(MAX_FILTER_PORTS + 10))
            watch.watch(watched)
            assert len(unwatched) == 10
            return len(watch.targets)

    assert asyncio.run(main()) == MAX_FILTER_PORTS
