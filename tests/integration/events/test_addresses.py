"""Address watch against the real kernel: addresses changed with ip(8) in a namespace."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

import pytest

from anycast_announcer.events.addresses import AddressEvent, AddressWatch
from anycast_announcer.events.rtnl import Interest
from anycast_announcer.netlab import Lab
from tests.integration.events.support import eventually

pytestmark = pytest.mark.integration

Watched = tuple[AddressWatch, list[AddressEvent]]
V4 = Interest("lo", ipaddress.ip_address("10.255.0.1"))
V6 = Interest("lo", ipaddress.ip_address("fd00:255::1"))


def ip(lab: Lab, *args: str) -> str:
    """ip(8) inside srv."""
    return lab.run("srv", ["ip", *args]).stdout


@pytest.fixture
def restore(events_lab: Lab) -> Iterator[None]:
    """Put the anycast addresses back and remove test devices, whatever the test did."""
    try:
        yield
    finally:
        events_lab.run("srv", ["ip", "addr", "replace", "10.255.0.1/32", "dev", "lo"])
        events_lab.run("srv", ["ip", "addr", "replace", "fd00:255::1/128", "dev", "lo"])
        events_lab.run("srv", ["ip", "link", "del", "evdummy"], check=False)


@pytest.mark.usefixtures("restore")
@pytest.mark.parametrize(("interest", "prefix"), [(V4, "10.255.0.1/32"), (V6, "fd00:255::1/128")])
async def test_ip_addr_del_and_add_are_reported(
    events_lab: Lab, address_watch: Watched, interest: Interest, prefix: str
) -> None:
    """Removal, then re-adding, each reported once with the new presence."""
    watch, seen = address_watch
    watch.watch([V4, V6])
    network = ipaddress.ip_network(prefix)
    assert watch.present("lo", network)
    ip(events_lab, "addr", "del", prefix, "dev", "lo")
    await eventually(lambda: seen, f"no event after removing {prefix}")
    assert seen == [AddressEvent("lo", interest.address, present=False)]
    assert not watch.present("lo", network)
    ip(events_lab, "addr", "add", prefix, "dev", "lo")
    await eventually(lambda: len(seen) == 2, f"no event after adding {prefix} again")
    assert seen[1] == AddressEvent("lo", interest.address, present=True)


@pytest.mark.usefixtures("restore")
async def test_changes_to_other_addresses_are_quiet(
    events_lab: Lab, address_watch: Watched
) -> None:
    """Other addresses, and the same address on another interface, report nothing."""
    watch, seen = address_watch
    watch.watch([V4])
    ip(events_lab, "addr", "add", "10.9.9.9/32", "dev", "lo")
    ip(events_lab, "addr", "add", "10.255.0.1/32", "dev", "eth1")
    ip(events_lab, "addr", "del", "10.255.0.1/32", "dev", "eth1")
    ip(events_lab, "addr", "del", "10.9.9.9/32", "dev", "lo")
    ip(events_lab, "addr", "del", "10.255.0.1/32", "dev", "lo")  # the canary, last
    await eventually(lambda: seen, "the canary removal was not reported")
    assert seen == [AddressEvent("lo", V4.address, present=False)]
    assert watch.counters.messages >= 5


@pytest.mark.usefixtures("restore")
async def test_deleting_the_interface_takes_its_addresses(
    events_lab: Lab, address_watch: Watched
) -> None:
    """An address on a link that is deleted is gone with it."""
    watch, seen = address_watch
    ip(events_lab, "link", "add", "evdummy", "type", "veth", "peer", "name", "evpeer")
    ip(events_lab, "addr", "add", "10.254.0.1/32", "dev", "evdummy")
    interest = Interest("evdummy", ipaddress.ip_address("10.254.0.1"))
    await eventually(
        lambda: watch.present("evdummy", ipaddress.ip_network("10.254.0.1/32")),
        "the new address never showed in the view",
    )
    watch.watch([interest])
    ip(events_lab, "link", "del", "evdummy")
    await eventually(lambda: seen, "no event after deleting the link")
    assert seen == [AddressEvent("evdummy", interest.address, present=False)]


async def test_snapshot_agrees_with_the_kernel(events_lab: Lab, address_watch: Watched) -> None:
    """After a full dump the view holds exactly what ip(8) lists, and nothing was missed."""
    watch, _ = address_watch
    await watch.snapshot()
    listed = json.loads(ip(events_lab, "-j", "addr", "show"))
    expected = {
        (link["ifname"], ipaddress.ip_address(a["local"]))
        for link in listed
        for a in link.get("addr_info", [])
    }
    assert expected  # lo, eth1 and their addresses at least
    for interface, address in expected:
        assert watch.present(interface, ipaddress.ip_network(address))
    assert not watch.present("lo", ipaddress.ip_network("10.255.0.2/32"))
    assert watch.counters.corrections == 0
