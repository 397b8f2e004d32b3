"""The flow directory's bucket table: the same everywhere, balanced, and stable."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anycast_announcer.rescue.directory import bucket_owners
from anycast_announcer.rescue.model import Family
from tests.unit.rescue.plans import plan

BUCKETS = 1024


def group(count: int, start: str = "10.2.0.1") -> list[ipaddress.IPv4Address]:
    first = ipaddress.IPv4Address(start)
    return [first + i * 7 for i in range(count)]


def table(members: list[ipaddress.IPv4Address]) -> dict[int, ipaddress.IPv4Address]:
    """bucket -> directory member's address."""
    ordered = sorted(members)
    return {b: ordered[i] for b, i in enumerate(bucket_owners(ordered, BUCKETS))}


def test_every_bucket_has_one_member_and_every_member_some_buckets() -> None:
    members = group(64)
    owners = table(members)
    assert len(owners) == BUCKETS
    load = Counter(owners.values())
    assert set(load) == set(members)
    # 16 buckets each on average; rendezvous hashing spreads them like a fair draw.
    assert min(load.values()) >= 4
    assert max(load.values()) <= 32


def test_a_departed_member_moves_only_its_own_buckets() -> None:
    members = group(64)
    before = table(members)
    gone = members[17]
    after = table([m for m in members if m != gone])
    moved = {b for b in before if before[b] != after[b]}
    assert moved == {b for b, owner in before.items() if owner == gone}
    assert all(after[b] != gone for b in moved)


def test_a_new_member_takes_buckets_only_for_itself() -> None:
    members = group(64)
    before = table(members)
    new = ipaddress.IPv4Address("10.9.9.9")
    after = table([*members, new])
    moved = {b for b in before if before[b] != after[b]}
    assert moved
    assert all(after[b] == new for b in moved)
    # About 1/65 of the buckets: a fair share, not a reshuffle.
    assert len(moved) < 3 * BUCKETS // 65


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=2**24), min_size=2, max_size=20))
def test_the_table_depends_on_the_addresses_alone(raw: set[int]) -> None:
    """Every member computes it from the member list: order and index do not matter."""
    members = [ipaddress.IPv4Address(0x0A000000 + value) for value in raw]
    ordered = sorted(members)
    owners = [ordered[i] for i in bucket_owners(ordered, 64)]
    shuffled = sorted(members, key=lambda a: int(a) * 7919 % 65537)
    again = [shuffled[i] for i in bucket_owners(shuffled, 64)]
    assert owners == again


def test_no_members_no_owners_and_buckets_must_exist() -> None:
    assert bucket_owners([], 16) == ()
    with pytest.raises(ValueError, match="buckets must be at least 1"):
        bucket_owners(group(2), 0)


def test_the_plan_carries_the_table_of_its_members() -> None:
    p = plan()
    assert p.directory is not None
    assert p.directory.buckets == 1024
    addresses = [m.address for m in p.members]
    assert [m.address for m in p.directory.owners] == [
        addresses[i] for i in bucket_owners(addresses, 1024)
    ]
    mine, remote = p.directory.mine(p.me), p.directory.remote(p.me)
    assert len(mine) + len(remote) == 1024
    assert all(owner != p.me for _, owner in remote)
    assert Family.IPV4 in p.families


def test_the_directory_can_be_turned_off_and_resized() -> None:
    assert plan("  directory: {enabled: false}\n").directory is None
    small = plan("  directory: {buckets: 16}\n").directory
    assert small is not None
    assert small.buckets == 16
