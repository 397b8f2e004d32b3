"""When an owner forgets its registrations once more after a bucket-map change (pure).

Theory of operation. An owner registers a flow with the flow's directory member, and
its ``registered`` set holds the flow back from registering again for
``register_interval``. A membership change that moves buckets re-declares
``registered`` empty in the same transaction as the new bucket map (``render``,
``diff``), so owners register again at each flow's next packet. But the members take
the new member list at different moments (learnt membership reaches them over BGP a
second or two apart; a rolling config push longer still), and a directory member
records a registration only for the buckets that are its own in *its* map: an owner
that switched first sends registrations its bucket's new directory member refuses,
and its ``registered`` set then holds those flows back for ``register_interval``.

So the owner forgets once more: ``reregister_after`` seconds after the last apply
that re-declared ``registered``, the shell empties the set again (``nft flush set``),
and every flow registers again at its next packet, with any directory member that
switched within that delay. A further change before the deadline moves the deadline
(its own apply emptied the set again). One deadline, no history: ``Reregistration``
answers when it is due (``deadline``) and, given the time, whether to empty now
(``expire``). It covers a directory member that is late by less than
``reregister_after``; later ones wait for ``register_interval`` as before, and the
flows meanwhile take the blind path if they move (docs/rescue.md).
"""

from __future__ import annotations

__all__ = ["Reregistration"]


class Reregistration:
    """The one pending second emptying of ``registered``, if any."""

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: float | None = None

    @property
    def deadline(self) -> float | None:
        """When ``registered`` is to be emptied again; None when nothing is pending."""
        return self._due

    def emptied(self, now: float, delay: float) -> None:
        """An apply re-declared ``registered`` (the bucket map changed) at ``now``:
        empty it again ``delay`` seconds later (0: not again, and nothing pending)."""
        if delay < 0:
            raise ValueError(f"delay must not be negative, not {delay}")
        self._due = now + delay if delay > 0 else None

    def cancel(self) -> None:
        """The plan has no directory any more (or no group): nothing to empty."""
        self._due = None

    def expire(self, now: float) -> bool:
        """True, once, when the deadline has come: empty ``registered`` now."""
        if self._due is None or now < self._due:
            return False
        self._due = None
        return True
