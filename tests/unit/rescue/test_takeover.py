"""Take-over: conntrack reconciled with the established sockets."""

from __future__ import annotations

import ipaddress

from anycast_announcer.rescue.takeover import CtEntry, Flow, plan_take_over

ANYCAST = (ipaddress.ip_network("10.255.0.1/32"),)
A = ipaddress.ip_address("10.255.0.1")
CLIENT = ipaddress.ip_address("10.3.0.2")
OTHER = ipaddress.ip_address("10.9.9.9")


def test_unknown_sockets_are_adopted_known_ones_relaxed_stale_entries_forgotten() -> None:
    known = Flow(A, 8080, CLIENT, 40001)
    unknown = Flow(A, 8080, CLIENT, 40002)
    entries = [
        CtEntry(CLIENT, 40001, A, 8080),  # the known socket's entry
        CtEntry(CLIENT, 40003, A, 8080),  # no socket: ended while nobody watched
        CtEntry(CLIENT, 40004, OTHER, 22),  # not an anycast flow: left alone
    ]
    todo = plan_take_over(entries, [known, unknown], ANYCAST)
    assert todo.adopt == (unknown,)
    assert todo.liberalize == (CtEntry(CLIENT, 40001, A, 8080),)
    assert todo.forget == (CtEntry(CLIENT, 40003, A, 8080),)


def test_an_entry_started_by_the_server_matches_its_socket_too() -> None:
    """Picked up from the server's own packet, the entry's original side is the server."""
    flow = Flow(A, 8080, CLIENT, 40001)
    todo = plan_take_over([CtEntry(A, 8080, CLIENT, 40001)], [flow], ANYCAST)
    assert todo.adopt == ()
    assert todo.liberalize == (CtEntry(A, 8080, CLIENT, 40001),)


def test_sockets_on_other_addresses_are_not_adopted() -> None:
    ssh = Flow(OTHER, 22, CLIENT, 50000)
    assert plan_take_over([], [ssh], ANYCAST).adopt == ()


def test_ipv6_and_prefix_ranges() -> None:
    prefix = (ipaddress.ip_network("fd00:255::/64"),)
    local = ipaddress.ip_address("fd00:255::7")
    client = ipaddress.ip_address("fd00:3::2")
    flow = Flow(local, 443, client, 1234)
    todo = plan_take_over([CtEntry(client, 999, local, 443)], [flow], prefix)
    assert todo.adopt == (flow,)
    assert todo.forget == (CtEntry(client, 999, local, 443),)


def test_lingering_time_wait_entries_are_neither_adopted_nor_forgotten() -> None:
    """A TIME_WAIT socket's entry stays, so a retransmitted FIN still finds it here."""
    closing = Flow(A, 8080, CLIENT, 40005)
    entry = CtEntry(CLIENT, 40005, A, 8080)
    todo = plan_take_over([entry], [], ANYCAST, lingering=[closing])
    assert todo == plan_take_over([], [], ANYCAST)
    assert plan_take_over([entry], [], ANYCAST).forget == (entry,)
