"""The BFD keeper: runs our BFD speaker for the peers the core asks for.

It turns the core's ``SyncBfd`` (desired sessions) into speaker calls (add, re-time
through a Poll Sequence, remove), beats the speaker's heartbeat from the event loop so a
stuck loop goes silent on the wire, and reports each session's verdict as ``BfdChanged``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from anycast_announcer.bfd import Diag, SessionSnapshot, State, StateChanged, Timers
from anycast_announcer.bfd.speaker import IPAddr, PeerSpec, Speaker, SpeakerError
from anycast_announcer.config import PeerConfig
from anycast_announcer.core.inputs import BfdChanged
from anycast_announcer.status import BfdState, BfdStatus
from anycast_announcer.workers import Submit

__all__ = ["HEARTBEAT_INTERVAL", "HEARTBEAT_TIMEOUT", "BfdKeeper", "verdict"]

log = structlog.get_logger("anycast_announcer.bfd")

HEARTBEAT_INTERVAL = 0.05
"""How often the event loop vouches for the speaker."""
HEARTBEAT_TIMEOUT = 0.2
"""A loop silent this long silences BFD; at 0.3 s x 3 the leaf then drops us in < 1.1 s.
Loop lag below about heartbeat timeout + (multiplier - 1) x interval costs no session."""


def verdict(change: StateChanged, snapshot: SessionSnapshot) -> bool | None:
    """What a state change means for the BGP session (see ``BfdChanged``)."""
    if change.new is State.UP:
        return True
    if change.new is State.ADMIN_DOWN:
        return None
    if change.new is State.DOWN:
        # RFC 5882 §3.2: the peer's AdminDown is not a failure of the path.
        if snapshot.remote_state is State.ADMIN_DOWN:
            return None
        return False
    return None  # INIT: on the way up, no verdict yet


@dataclass(frozen=True, slots=True)
class _Wanted:
    local: IPAddr | None
    timers: Timers


class BfdKeeper:
    """Owns the speaker (and its thread) for the sidecar's lifetime."""

    def __init__(
        self,
        submit: Submit,
        *,
        speaker: Callable[[Callable[[IPAddr, StateChanged, SessionSnapshot], None]], Speaker]
        | None = None,
    ) -> None:
        self._submit = submit
        self._make_speaker = speaker or (
            lambda report: Speaker(report, heartbeat_timeout=HEARTBEAT_TIMEOUT)
        )
        self._speaker: Speaker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wanted: dict[IPAddr, _Wanted] = {}
        self._changes: dict[IPAddr, int] = {}

    def sync(self, peers: tuple[PeerConfig, ...]) -> None:
        """Make the running sessions those of ``peers`` (called on the event loop)."""
        wanted = {peer.address: _wanted(peer) for peer in peers}
        if wanted and self._speaker is None:
            self._loop = asyncio.get_running_loop()
            self._speaker = self._make_speaker(self._report)
            self._speaker.start()
        speaker = self._speaker
        if speaker is None:
            return
        for address, old in list(self._wanted.items()):
            new = wanted.get(address)
            if new is None or new.local != old.local:
                speaker.remove_peer(address)
                del self._wanted[address]
                log.info("bfd_session_stopped", peer=str(address))
            elif new.timers != old.timers:
                speaker.set_timers(address, new.timers)
                self._wanted[address] = new
                log.info("bfd_timers_changed", peer=str(address), timers=str(new.timers))
        for address, new in wanted.items():
            if address in self._wanted:
                continue
            try:
                speaker.add_peer(PeerSpec(address, new.timers, new.local))
            except SpeakerError as error:
                log.error("bfd_session_failed", peer=str(address), error=str(error))
                continue
            self._wanted[address] = new

    async def run(self) -> None:
        """Beat the speaker's heartbeat until cancelled (the loop's proof of life)."""
        while True:
            if self._speaker is not None:
                self._speaker.beat()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    def status(self) -> dict[str, BfdStatus]:
        """Every session, for ``/status``, the page, the CLI and ``/metrics``."""
        if self._speaker is None:
            return {}
        offset = time.time() - time.monotonic()
        return {
            str(peer): _status(snap, self._changes.get(peer, 0), offset)
            for peer, snap in self._speaker.snapshots().items()
        }

    def transmit_stats(self) -> tuple[float, int] | None:
        """(worst transmit lateness in seconds, transmits held back), or None without BFD."""
        if self._speaker is None:
            return None
        stats = self._speaker.stats
        return (max(stats.lateness, default=0.0), stats.suppressed)

    def close(self) -> None:
        """Tell every peer AdminDown, then stop the thread: the last step of a clean stop."""
        if self._speaker is not None:
            self._speaker.stop(admin_down=True)
            self._speaker = None
            log.info("bfd_stopped", sessions=len(self._wanted))
        self._wanted.clear()

    def _report(self, peer: IPAddr, change: StateChanged, snapshot: SessionSnapshot) -> None:
        # On the speaker's thread: hand over to the loop, which owns the input queue.
        loop = self._loop
        if loop is None:
            return
        up = verdict(change, snapshot)
        reason = _reason(change, snapshot)
        with contextlib.suppress(RuntimeError):  # the loop closed while we stopped
            loop.call_soon_threadsafe(self._on_change, peer, up, reason)

    def _on_change(self, peer: IPAddr, up: bool | None, reason: str) -> None:
        self._changes[peer] = self._changes.get(peer, 0) + 1
        if peer in self._wanted:
            self._submit(BfdChanged(str(peer), up, reason))


def _wanted(peer: PeerConfig) -> _Wanted:
    assert peer.bfd is not None  # SyncBfd carries only peers with bfd
    local = peer.local_address
    return _Wanted(
        local=ipaddress.ip_address(local) if local is not None else None,
        timers=Timers(peer.bfd.min_tx, peer.bfd.min_rx, peer.bfd.multiplier),
    )


def _reason(change: StateChanged, snapshot: SessionSnapshot) -> str:
    if change.new is State.UP:
        return "up"
    text = change.diag.name.lower().replace("_", " ")
    if change.diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN and (
        snapshot.remote_state is State.ADMIN_DOWN
    ):
        text += " (admin down)"
    return text or change.new.name.lower()


def _status(snap: SessionSnapshot, changes: int, wall_offset: float) -> BfdStatus:
    return BfdStatus(
        state=_state(snap.state),
        remote_state=_state(snap.remote_state),
        local_discriminator=snap.local_discriminator,
        remote_discriminator=snap.remote_discriminator,
        local_diag=snap.local_diag.name.lower(),
        remote_diag=snap.remote_diag.name.lower(),
        transmit_interval=snap.transmit_interval,
        detection_time=snap.detection_time,
        remote_min_rx=snap.remote_min_rx,
        remote_min_tx=snap.remote_min_tx,
        remote_multiplier=snap.remote_multiplier,
        polling=snap.polling,
        state_changes=changes,
        last_change_at=None if snap.last_change is None else snap.last_change + wall_offset,
        packets_sent=snap.packets_sent,
        packets_received=snap.packets_received,
        packets_discarded=snap.packets_discarded,
    )


_STATES: dict[State, BfdState] = {
    State.ADMIN_DOWN: "admin_down",
    State.DOWN: "down",
    State.INIT: "init",
    State.UP: "up",
}


def _state(state: State) -> BfdState:
    return _STATES[state]
