"""The flow directory's bucket table: which member answers for which flows (pure).

A flow's bucket is ``jhash(saddr . sport . daddr . dport) mod buckets`` with a fixed seed,
computed by the kernel (nftables ``jhash``) on every member alike. Each bucket has one
*directory member*, chosen here by rendezvous (highest random weight) hashing: every
member scores every bucket, the highest score wins. Every member derives the same table
from the same member list, with no coordination, and a membership change moves only the
buckets it must: a departed member's buckets spread over the others, a new member takes
about ``1/N`` of the buckets from the others and nothing else moves. A moved bucket's
new directory member has no entries for it: the owners' ``registered`` set is tied to
the bucket map (see ``render``), so it is emptied when the map changes and owners
register again at each flow's next packet; flows of buckets that did not move keep
their entries.

The score is a 64-bit mix of a per-member key (from the member's address, not its index
in the list, so a member's scores do not change when others join or leave) and the
bucket number.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from anycast_announcer.overlay import IPAddress

__all__ = ["SEED", "bucket_owners"]

SEED = 0x616E7963
"""The ``jhash`` seed of the bucket function: a constant, the same on every member."""

_MASK = (1 << 64) - 1


def _member_key(address: IPAddress) -> int:
    return int.from_bytes(hashlib.blake2b(address.packed, digest_size=8).digest(), "big")


def _mix(value: int) -> int:
    # splitmix64's finaliser: every input bit reaches every output bit, so scores of one
    # member across buckets (and of members for one bucket) are independent enough.
    value = (value ^ (value >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    value = (value ^ (value >> 27)) * 0x94D049BB133111EB & _MASK
    return value ^ (value >> 31)


@functools.lru_cache(maxsize=16)
def _owners(members: tuple[IPAddress, ...], buckets: int) -> tuple[int, ...]:
    keys = [_member_key(address) for address in members]
    salts = [(bucket + 1) * 0x9E3779B97F4A7C15 & _MASK for bucket in range(buckets)]
    owners = []
    for salt in salts:
        # Ties (vanishingly rare) go to the lower position, which is the lower address.
        scores = [_mix(key ^ salt) for key in keys]
        owners.append(scores.index(max(scores)))
    return tuple(owners)


def bucket_owners(members: Sequence[IPAddress], buckets: int) -> tuple[int, ...]:
    """For each bucket, the position in ``members`` of its directory member.

    ``members`` must be sorted (the plan's member order); an empty list has no owners.
    """
    if buckets < 1:
        raise ValueError(f"buckets must be at least 1, not {buckets}")
    if not members:
        return ()
    return _owners(tuple(members), buckets)
