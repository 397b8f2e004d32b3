"""ManagedAddresses: adds what is missing, removes exactly what it added (netlink faked)."""

from __future__ import annotations

from structlog.testing import capture_logs

from anycast_announcer.config import Config
from anycast_announcer.workers.addresses import ManagedAddresses
from tests.unit.workers.fakes import BASE, FakeBook

MANAGED = {
    **BASE,
    "prefixes": [
        *BASE["prefixes"],
        {"prefix": "10.255.0.3/32", "services": ["web"]},  # not managed
    ],
}


class TestManagedAddresses:
    async def test_adds_only_the_missing_managed_addresses(self) -> None:
        book = FakeBook({("lo", "10.255.0.2/32")})
        managed = ManagedAddresses(book)
        await managed.add(Config.model_validate(MANAGED).prefixes)
        assert book.addresses == {("lo", "10.255.0.1/32"), ("lo", "10.255.0.2/32")}

    async def test_removes_exactly_what_it_added(self) -> None:
        book = FakeBook({("lo", "10.255.0.2/32"), ("lo", "10.255.0.3/32")})
        managed = ManagedAddresses(book)
        await managed.add(Config.model_validate(MANAGED).prefixes)
        await managed.remove_added()
        assert book.addresses == {("lo", "10.255.0.2/32"), ("lo", "10.255.0.3/32")}
        await managed.remove_added()  # nothing left to remove: idempotent
        assert book.addresses == {("lo", "10.255.0.2/32"), ("lo", "10.255.0.3/32")}

    async def test_a_failed_removal_is_logged_and_the_rest_removed(self) -> None:
        book = FakeBook()
        managed = ManagedAddresses(book)
        await managed.add(Config.model_validate(MANAGED).prefixes)
        book.fail_remove = True
        with capture_logs() as logs:
            await managed.remove_added()
        failed = [e["prefix"] for e in logs if e["event"] == "address_remove_failed"]
        assert failed == ["10.255.0.1/32", "10.255.0.2/32"]
