"""The events lab (two namespaces, no router), its TCP processes, and watchers opened in it.

``events_lab`` is deployed once per module under a unique name and always destroyed.
``tcp`` starts services in ``srv`` and client loads in ``client`` and kills whatever is
still running at teardown. The watcher fixtures open their sockets inside ``srv``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from anycast_announcer.events.addresses import AddressEvent, AddressWatch
from anycast_announcer.events.listeners import ListenerGone, ListenerWatch
from anycast_announcer.netlab import Lab
from tests.integration.events.netns import entered
from tests.integration.events.support import TcpProcesses
from tests.lablib import deployed, require_lab_host

EVENTS_TOPOLOGY = Path(__file__).with_name("events.clab.yml")


@pytest.fixture(scope="module")
def events_lab() -> Iterator[Lab]:
    """The two-namespace lab, for this module, always destroyed."""
    require_lab_host()
    with deployed(EVENTS_TOPOLOGY) as lab:
        yield lab


@pytest.fixture
def tcp(events_lab: Lab) -> Iterator[TcpProcesses]:
    """Start TCP processes in the lab; all killed at teardown."""
    processes = TcpProcesses(events_lab)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture
async def listener_watch(
    events_lab: Lab,
) -> AsyncIterator[tuple[ListenerWatch, list[ListenerGone]]]:
    """A ListenerWatch whose sockets live in srv, and the events it reported."""
    seen: list[ListenerGone] = []
    watch = ListenerWatch(seen.append)
    with entered(events_lab.ns("srv")):
        watch.open()
    try:
        yield watch, seen
    finally:
        watch.close()


@pytest.fixture
async def address_watch(
    events_lab: Lab,
) -> AsyncIterator[tuple[AddressWatch, list[AddressEvent]]]:
    """An AddressWatch subscribed in srv, and the events it reported."""
    seen: list[AddressEvent] = []
    watch = AddressWatch(seen.append)
    with entered(events_lab.ns("srv")):
        await watch.open()
    try:
        yield watch, seen
    finally:
        watch.close()
