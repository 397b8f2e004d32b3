"""Listener watch against the real kernel: real listeners in a namespace, real clients.

Every "stays quiet" test waits for a positive sign that the watch has processed what
the kernel sent (a dismissal, or a canary listener's event after the action) before it
asserts that nothing was reported, so it cannot pass by looking too early.
"""

from __future__ import annotations

import ipaddress

import pytest

from anycast_announcer.events.listeners import ListenerGone, ListenerWatch, ListenTarget
from tests.integration.events.support import TcpProcesses, eventually

pytestmark = pytest.mark.integration

ANYCAST = "10.255.0.1"
ANYCAST6 = "fd00:255::1"
PORT = 8080
Watched = tuple[ListenerWatch, list[ListenerGone]]


def target(address: str, port: int = PORT) -> ListenTarget:
    """A ListenTarget from text."""
    return ListenTarget(ipaddress.ip_address(address), port)


@pytest.mark.parametrize("address", [ANYCAST, ANYCAST6])
async def test_sigkill_of_the_serving_process_is_reported(
    listener_watch: Watched, tcp: TcpProcesses, address: str
) -> None:
    """The process holding the only listener dies: one confirmed ListenerGone."""
    watch, seen = listener_watch
    service = tcp.serve(address, PORT)
    watch.watch([target(address)])
    assert await watch.serving(target(address))
    tcp.kill(service)
    await eventually(lambda: seen, "no ListenerGone after SIGKILL")
    assert seen == [ListenerGone(target(address))]
    assert watch.counters.confirmed == 1
    assert not await watch.serving(target(address))


async def test_graceful_close_is_reported(listener_watch: Watched, tcp: TcpProcesses) -> None:
    """The service closes its listener itself (SIGTERM handler): the same event."""
    watch, seen = listener_watch
    service = tcp.serve(ANYCAST, PORT)
    watch.watch([target(ANYCAST)])
    tcp.stop(service)
    await eventually(lambda: seen, "no ListenerGone after a graceful close")
    assert seen == [ListenerGone(target(ANYCAST))]


@pytest.mark.parametrize("flags", [(), ("--abort",)], ids=["close", "abort"])
async def test_client_connections_closing_reach_no_user_space(
    listener_watch: Watched, tcp: TcpProcesses, flags: tuple[str, ...]
) -> None:
    """500 client connections open and close on the watched port (FIN, or RST with
    SO_LINGER 0 on both sides): the kernel filter lets none of their sockets through."""
    watch, seen = listener_watch
    service = tcp.serve(ANYCAST, PORT, *flags)
    canary = tcp.serve("10.0.1.2", PORT)
    watch.watch([target(ANYCAST), target("10.0.1.2")])
    tcp.churn(ANYCAST, PORT, 500, *flags)
    tcp.kill(canary)  # its destroy message queues behind any the churn produced
    await eventually(lambda: seen, "the canary listener's event never came")
    assert seen == [ListenerGone(target("10.0.1.2"))]
    assert watch.counters.messages == 1  # the canary's message, nothing from the churn
    assert service.poll() is None


async def test_reuseport_handover_is_dismissed(listener_watch: Watched, tcp: TcpProcesses) -> None:
    """A restart that starts the new listener (SO_REUSEPORT) before the old one dies."""
    watch, seen = listener_watch
    old = tcp.serve(ANYCAST, PORT, "--reuseport")
    watch.watch([target(ANYCAST)])
    new = tcp.serve(ANYCAST, PORT, "--reuseport")
    tcp.kill(old)
    await eventually(
        lambda: watch.counters.dismissed == 1, "the old listener's destroy was not seen"
    )
    assert seen == []
    assert await watch.serving(target(ANYCAST))
    tcp.kill(new)  # and the watch still fires once the last one goes
    await eventually(lambda: seen, "no ListenerGone after the new listener died")
    assert seen == [ListenerGone(target(ANYCAST))]


@pytest.mark.parametrize(
    ("closed", "remaining"),
    [
        ((ANYCAST, ()), ("0.0.0.0", ())),
        (("0.0.0.0", ()), (ANYCAST, ())),
        ((ANYCAST, ()), ("::", ())),
        (("::", ()), ("0.0.0.0", ())),
    ],
    ids=[
        "specific-closed-wildcard-stays",
        "wildcard-closed-specific-stays",
        "dual-stack-stays",
        "dual-stack-closed-v4-wildcard-stays",
    ],
)
async def test_a_second_listener_still_serving_is_a_dismissal(
    listener_watch: Watched,
    tcp: TcpProcesses,
    closed: tuple[str, tuple[str, ...]],
    remaining: tuple[str, tuple[str, ...]],
) -> None:
    """Another socket on the same port still accepts connections to the target."""
    watch, seen = listener_watch
    stays = tcp.serve(remaining[0], PORT, "--reuseport", *remaining[1])
    goes = tcp.serve(closed[0], PORT, "--reuseport", *closed[1])
    watch.watch([target(ANYCAST)])
    tcp.kill(goes)
    await eventually(lambda: watch.counters.dismissed == 1, "the closed listener was not seen")
    assert seen == []
    assert stays.poll() is None


async def test_a_v6only_wildcard_does_not_serve_ipv4(
    listener_watch: Watched, tcp: TcpProcesses
) -> None:
    """[::] with IPV6_V6ONLY left behind: the IPv4 target has no listener any more."""
    watch, seen = listener_watch
    tcp.serve("::", PORT, "--reuseport", "--v6only")
    goes = tcp.serve(ANYCAST, PORT, "--reuseport")
    watch.watch([target(ANYCAST), target(ANYCAST6)])
    tcp.kill(goes)
    await eventually(lambda: seen, "no ListenerGone for the IPv4 target")
    assert seen == [ListenerGone(target(ANYCAST))]
    assert await watch.serving(target(ANYCAST6))


async def test_a_listener_on_another_address_is_not_the_target(
    listener_watch: Watched, tcp: TcpProcesses
) -> None:
    """Same port, another specific address: it passes the filter but concerns no target."""
    watch, seen = listener_watch
    tcp.serve(ANYCAST, PORT)
    other = tcp.serve("10.0.1.2", PORT)
    watch.watch([target(ANYCAST)])
    tcp.kill(other)
    await eventually(lambda: watch.counters.messages == 1, "the other listener was not seen")
    assert seen == []
    assert (watch.counters.confirmed, watch.counters.dismissed) == (0, 0)


async def test_rewatching_moves_the_kernel_filter(
    listener_watch: Watched, tcp: TcpProcesses
) -> None:
    """Ports not watched are dropped in the kernel; after watch() they pass."""
    watch, seen = listener_watch
    unwatched = tcp.serve(ANYCAST, 9090)
    canary = tcp.serve(ANYCAST, PORT)
    watch.watch([target(ANYCAST)])
    tcp.kill(unwatched)
    tcp.kill(canary)
    await eventually(lambda: seen, "the canary listener's event never came")
    assert (seen, watch.counters.messages) == ([ListenerGone(target(ANYCAST))], 1)
    watch.watch([target(ANYCAST, 9090)])
    tcp.kill(tcp.serve(ANYCAST, 9090))
    await eventually(lambda: len(seen) == 2, "no event on the newly watched port")
    assert seen[1] == ListenerGone(target(ANYCAST, 9090))
