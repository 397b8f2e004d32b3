"""ExaBGP command encoding (golden strings) and the desired/acknowledged diff."""

from __future__ import annotations

from anycast_announcer.exabgp.commands import (
    announce_command,
    plan_commands,
    withdraw_command,
)
from anycast_announcer.routes import Route, RouteKey


def test_announce_with_every_attribute() -> None:
    """The exact line ExaBGP 5.0 accepts (pinned against FRR by the contract tests)."""
    route = Route(
        peer="10.0.1.1",
        prefix="10.255.0.1/32",
        med=100,
        communities=("65001:100",),
        large_communities=("65001:1:2",),
        extended_communities=("0x0004fde94e9502f9",),
        as_path=(65001, 65001),
    )
    assert announce_command(route) == (
        "neighbor 10.0.1.1 announce route 10.255.0.1/32 next-hop self med 100 "
        "as-path [ 65001 65001 ] community [ 65001:100 ] large-community [ 65001:1:2 ] "
        "extended-community [ 0x0004fde94e9502f9 ]"
    )


def test_announce_minimal() -> None:
    route = Route(peer="fd00:1::1", prefix="fd00:255::1/128")
    assert announce_command(route) == (
        "neighbor fd00:1::1 announce route fd00:255::1/128 next-hop self"
    )


def test_withdraw() -> None:
    assert withdraw_command(RouteKey("10.0.1.1", "10.255.0.1/32")) == (
        "neighbor 10.0.1.1 withdraw route 10.255.0.1/32 next-hop self"
    )


class TestPlan:
    a = Route("10.0.1.1", "10.255.0.1/32", med=1)
    b = Route("10.0.2.1", "10.255.0.1/32", med=1)

    def test_nothing_to_do_when_in_sync(self) -> None:
        """Only changes are sent: no periodic re-announcements."""
        routes = {self.a.key: self.a}
        assert plan_commands(routes, dict(routes)) == []

    def test_everything_after_restart(self) -> None:
        """An empty acknowledged set (a new ExaBGP) sends the full desired set."""
        plan = plan_commands({self.a.key: self.a, self.b.key: self.b}, {})
        assert [c.line for c in plan] == [announce_command(self.a), announce_command(self.b)]

    def test_changed_attribute_is_reannounced(self) -> None:
        changed = Route("10.0.1.1", "10.255.0.1/32", med=2)
        plan = plan_commands({changed.key: changed}, {self.a.key: self.a})
        assert [c.route for c in plan] == [changed]

    def test_announcements_before_withdrawals(self) -> None:
        plan = plan_commands({self.b.key: self.b}, {self.a.key: self.a})
        assert [c.route for c in plan] == [self.b, None]
        assert plan[1].line == withdraw_command(self.a.key)
