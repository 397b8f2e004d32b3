"""Hash-threshold ECMP arithmetic (RFC 2992), pure: which share of flows changes next hop.

Hash-threshold (RFC 2992, the Linux IPv4/IPv6 multipath algorithm) splits the hash space
into contiguous regions, one per next hop in group order, each as wide as its weight's
share. A flow keeps its next hop across a change only where its old and new regions
overlap. For N equal next hops, removing the k-th (1-based) moves, besides the removed
region's own 1/N, a share

    ((k-1)(k-2) + (N-k)(N-k-1)) / (2 N (N-1))

of flows that were on next hops that stayed: (N-2)/(2N) for the first or last region,
about 1/4 for a middle one; that is RFC 2992's "between 1/4 and 1/2" for large N.
Adding one is the same change read backwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NextHops = Sequence[tuple[str, float]]
"""(next hop, weight) in group order."""


def regions(hops: NextHops) -> list[tuple[str, float, float]]:
    """Each next hop's [start, end) slice of the unit hash space."""
    total = float(sum(weight for _, weight in hops))
    result, start = [], 0.0
    for name, weight in hops:
        end = start + weight / total
        result.append((name, start, end))
        start = end
    return result


@dataclass(frozen=True, slots=True)
class Movement:
    """Shares of the hash space (0..1) that change next hop between two groups."""

    moved: float
    """every flow whose next hop changes"""
    innocent: float
    """flows whose old next hop is still in the new group, yet that moved anyway"""
    to_added: float
    """flows that now go to a next hop that was not in the old group"""


def movement(old: NextHops, new: NextHops) -> Movement:
    """How much of the hash space changes next hop when ``old`` becomes ``new``."""
    old_regions, new_regions = regions(old), regions(new)
    old_names = {name for name, _ in old}
    new_names = {name for name, _ in new}
    stay = 0.0
    innocent = 0.0
    to_added = 0.0
    for old_name, old_start, old_end in old_regions:
        for new_name, new_start, new_end in new_regions:
            overlap = max(0.0, min(old_end, new_end) - max(old_start, new_start))
            if new_name == old_name:
                stay += overlap
            elif old_name in new_names:
                innocent += overlap
            if new_name not in old_names:
                to_added += overlap
    return Movement(moved=1.0 - stay, innocent=innocent, to_added=to_added)


def rfc2992_innocent_share(n: int, k: int) -> float:
    """Closed form for N equal next hops losing the k-th (1-based); see the module doc."""
    if n < 2:
        return 0.0
    return ((k - 1) * (k - 2) + (n - k) * (n - k - 1)) / (2 * n * (n - 1))
