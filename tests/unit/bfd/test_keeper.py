"""What a BFD state change means for the BGP session (workers.bfd.verdict)."""

from __future__ import annotations

import dataclasses

import pytest

from anycast_announcer.bfd import Diag, Session, State, StateChanged, Timers
from anycast_announcer.workers.bfd import verdict

SNAPSHOT = Session(7, Timers(), now=0.0).snapshot()


def change(new: State, diag: Diag = Diag.NONE) -> StateChanged:
    return StateChanged(State.UP, new, diag, 1.0)


@pytest.mark.parametrize(
    ("new", "diag", "remote", "expected"),
    [
        (State.UP, Diag.NONE, State.UP, True),
        (State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, State.UP, False),
        (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, State.DOWN, False),
        # RFC 5882 §3.2: the peer's AdminDown is not a path failure.
        (State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN, State.ADMIN_DOWN, None),
        (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN, State.UP, None),
        (State.INIT, Diag.NONE, State.DOWN, None),
    ],
)
def test_verdict(new: State, diag: Diag, remote: State, expected: bool | None) -> None:
    snapshot = dataclasses.replace(SNAPSHOT, remote_state=remote)
    assert verdict(change(new, diag), snapshot) is expected
