"""The BFD shell: UDP sockets and timers for every session, on a thread of its own.

Why a thread. BFD's promise is a packet every few hundred milliseconds, on time; the
sidecar's event loop also runs probes, HTTP and ExaBGP's pipes, and a slow callback there
would delay a transmit and make a leaf declare a healthy server dead. So the sessions,
their sockets and their timers live on one dedicated thread, which Python schedules even
while the loop is busy (the GIL is handed over every few milliseconds).

Why a heartbeat. A thread that kept answering while the event loop is stuck would tell the
fabric "all is well" for a sidecar that can no longer judge anything: exactly the failure
BFD should reveal. The loop therefore calls ``beat()`` every ``heartbeat_interval``; the
thread transmits only while the last beat is younger than ``heartbeat_timeout``, so a stuck
loop (or a stopped process) goes silent and the leaf's detection timer takes the routes
away within its detection time.

RFC 5881 single hop: packets go to UDP 3784 from a source port in 49152-65535, with TTL
(hop limit) 255, and a received packet must carry 255 too (GTSM): anything else came from
further than one hop and is discarded.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import queue
import random
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from anycast_announcer.bfd._packet import BfdPacketError
from anycast_announcer.bfd._session import (
    Session,
    SessionSnapshot,
    StateChanged,
    Timers,
    Transmit,
)

__all__ = [
    "BFD_PORT",
    "SOURCE_PORTS",
    "PeerSpec",
    "Speaker",
    "SpeakerError",
    "TransmitStats",
]

log = structlog.get_logger("anycast_announcer.bfd")

BFD_PORT = 3784
SOURCE_PORTS = range(49152, 65536)
_TTL = 255
# Linux values; Python's socket module lacks IP_RECVTTL.
_IP_TTL = getattr(socket, "IP_TTL", 2)
_IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
_CMSG_SPACE = socket.CMSG_SPACE(4)
_MAX_WAIT = 0.5  # wake at least this often, to notice a stop even if no timer is due

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpeakerError(Exception):
    """A session cannot be set up (address not local, port taken): the operator's to fix."""


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One BFD session to run: the peer, the local address to use, and its timers."""

    peer: IPAddr
    timers: Timers
    local: IPAddr | None = None


@dataclass(slots=True)
class TransmitStats:
    """How late periodic transmits were against their schedule (seconds), and how many
    were held back because the event loop had not beaten recently."""

    lateness: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=100_000)
    )
    suppressed: int = 0
    send_errors: int = 0
    discarded_ttl: int = 0
    discarded_invalid: int = 0
    discarded_unknown_peer: int = 0


@dataclass(slots=True)
class _Peer:
    spec: PeerSpec
    session: Session
    tx: socket.socket
    rx_key: tuple[int, str]


class Speaker:
    """Every BFD session of the sidecar, run on one thread; see the module docstring."""

    def __init__(
        self,
        on_change: Callable[[IPAddr, StateChanged, SessionSnapshot], None],
        *,
        heartbeat_timeout: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_change = on_change
        self._heartbeat_timeout = heartbeat_timeout
        self._clock = clock
        self._rng = random.SystemRandom()
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[Callable[[float], None]] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._peers: dict[IPAddr, _Peer] = {}
        self._rx: dict[tuple[int, str], socket.socket] = {}
        self._last_beat = clock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.stats = TransmitStats()

    # -- called from the event loop -------------------------------------------------------

    def start(self) -> None:
        """Start the thread; sessions may be added before or after."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="bfd", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        """The event loop is alive: allow transmits for another ``heartbeat_timeout``."""
        self._last_beat = self._clock()

    def add_peer(self, spec: PeerSpec) -> None:
        """Open the sockets of a session now (errors are raised here), run it on the thread."""
        with self._lock:
            if spec.peer in self._peers:
                raise SpeakerError(f"bfd: a session to {spec.peer} already exists")
            rx_key = self._open_rx(spec)
            try:
                tx = _open_tx(spec, self._rng)
            except OSError as exc:
                raise SpeakerError(f"bfd: cannot send to {spec.peer}: {exc}") from exc
            session = Session(self._new_discriminator(), spec.timers, now=self._clock())
            self._peers[spec.peer] = _Peer(spec, session, tx, rx_key)
        self._wake()
        log.info("bfd_session_added", peer=str(spec.peer), local=str(spec.local or "any"))

    def remove_peer(self, peer: IPAddr) -> None:
        """Say AdminDown to the peer and forget the session."""
        self._submit(lambda now: self._remove(peer, now))

    def set_timers(self, peer: IPAddr, timers: Timers) -> None:
        """New intervals for a session; an UP session applies them through a Poll Sequence."""
        self._submit(lambda now: self._session(peer, lambda s: s.set_timers(timers, now)))

    def admin_down(self, peer: IPAddr) -> None:
        """Take one session AdminDown (RFC 5882: the peer must not drop BGP for this)."""
        self._submit(lambda now: self._session(peer, lambda s: s.admin_down(now)))

    def admin_up(self, peer: IPAddr) -> None:
        """Bring a session back from AdminDown."""
        self._submit(lambda now: self._session(peer, lambda s: s.admin_up(now)))

    def snapshots(self) -> dict[IPAddr, SessionSnapshot]:
        """A copy of every session's state, safe to read from any thread."""
        with self._lock:
            return {peer: p.session.snapshot() for peer, p in self._peers.items()}

    def stop(self, *, admin_down: bool = True, timeout: float = 2.0) -> None:
        """Stop the thread; first tell every peer AdminDown (a clean stop)."""
        if admin_down and self._thread is not None:
            self._submit(self._admin_down_all)
        self._submit(lambda now: self._set_stopping())
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            for peer in list(self._peers.values()):
                peer.tx.close()
            self._peers.clear()
            for sock in self._rx.values():
                sock.close()
            self._rx.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                wait = self._next_wait()
            events = self._selector.select(wait)
            with self._lock:
                now = self._clock()
                for key, _ in events:
                    if key.data is None:
                        _drain(self._wake_r)
                    else:
                        self._read(key.fileobj, now)  # type: ignore[arg-type]
                self._run_commands(now)
                self._run_timers(now)

    def _next_wait(self) -> float:
        timers = [t for p in self._peers.values() if (t := p.session.get_timer()) is not None]
        if not timers:
            return _MAX_WAIT
        return min(_MAX_WAIT, max(0.0, min(timers) - self._clock()))

    def _run_commands(self, now: float) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command(now)

    def _run_timers(self, now: float) -> None:
        for peer in list(self._peers.values()):
            due = peer.session.get_timer()
            if due is not None and due <= now:
                transmit_due = peer.session.next_transmit
                if transmit_due is not None and transmit_due <= now:
                    self.stats.lateness.append(now - transmit_due)
                peer.session.handle_timer(now)
            self._perform(peer)

    def _read(self, sock: socket.socket, now: float) -> None:
        for _ in range(64):  # bounded, so a flood cannot starve our own transmits
            try:
                data, ancdata, _flags, address = sock.recvmsg(512, 2 * _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if _hops(ancdata) != _TTL:
                self.stats.discarded_ttl += 1
                continue
            source = ipaddress.ip_address(address[0].split("%")[0])
            peer = self._peers.get(source)
            if peer is None:
                self.stats.discarded_unknown_peer += 1
                continue
            try:
                peer.session.receive(data, now)
            except BfdPacketError as exc:
                self.stats.discarded_invalid += 1
                log.debug("bfd_packet_discarded", peer=str(source), reason=str(exc))
            self._perform(peer)

    def _perform(self, peer: _Peer) -> None:
        for effect in peer.session.effects():
            if isinstance(effect, Transmit):
                self._transmit(peer, effect.data)
            else:
                snapshot = peer.session.snapshot()
                log.info(
                    "bfd_session_changed",
                    peer=str(peer.spec.peer),
                    old=effect.old.name.lower(),
                    new=effect.new.name.lower(),
                    diag=effect.diag.name.lower(),
                )
                self._on_change(peer.spec.peer, effect, snapshot)

    def _transmit(self, peer: _Peer, data: bytes) -> None:
        if self._clock() - self._last_beat > self._heartbeat_timeout and not self._stopping:
            # The loop has not vouched for us lately: let the peer time us out.
            self.stats.suppressed += 1
            return
        try:
            peer.tx.sendto(data, (str(peer.spec.peer), BFD_PORT))
        except OSError:
            self.stats.send_errors += 1

    # -- commands, run on the thread ------------------------------------------------------

    def _submit(self, command: Callable[[float], None]) -> None:
        self._commands.put(command)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _session(self, peer: IPAddr, action: Callable[[Session], None]) -> None:
        found = self._peers.get(peer)
        if found is not None:
            action(found.session)
            self._perform(found)

    def _remove(self, peer: IPAddr, now: float) -> None:
        found = self._peers.pop(peer, None)
        if found is None:
            return
        found.session.admin_down(now)
        self._perform(found)
        found.tx.close()
        log.info("bfd_session_removed", peer=str(peer))

    def _admin_down_all(self, now: float) -> None:
        # Sent three times: a lost AdminDown would leave the peer to time us out, and a
        # timeout (unlike AdminDown, RFC 5882) takes its BGP session down.
        self._stopping = True  # transmit even if the loop stopped beating during shutdown
        for peer in self._peers.values():
            peer.session.admin_down(now)
            for effect in peer.session.effects():
                if isinstance(effect, Transmit):
                    for _ in range(3):
                        self._transmit(peer, effect.data)
                else:
                    self._on_change(peer.spec.peer, effect, peer.session.snapshot())

    def _set_stopping(self) -> None:
        self._stopping = True

    # -- sockets --------------------------------------------------------------------------

    def _open_rx(self, spec: PeerSpec) -> tuple[int, str]:
        family = socket.AF_INET if spec.peer.version == 4 else socket.AF_INET6
        local = str(spec.local) if spec.local is not None else ("::" if family == 10 else "")
        key = (family, local)
        if key in self._rx:
            return key
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
            sock.bind((local, BFD_PORT))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise SpeakerError(f"bfd: cannot listen on {local or '*'}:{BFD_PORT}: {exc}") from exc
        self._rx[key] = sock
        self._selector.register(sock, selectors.EVENT_READ, key)
        return key

    def _new_discriminator(self) -> int:
        used = {p.session.snapshot().local_discriminator for p in self._peers.values()}
        while True:
            candidate = self._rng.randrange(1, 2**32)
            if candidate not in used:
                return candidate


def _open_tx(spec: PeerSpec, rng: random.Random) -> socket.socket:
    family = socket.AF_INET if spec.peer.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, _TTL)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_TTL, _TTL)
        local = str(spec.local) if spec.local is not None else ""
        # RFC 5881 §4: the source port must be in 49152-65535, outside Linux's default
        # ephemeral range's lower part, so we pick one ourselves.
        for _ in range(64):
            try:
                sock.bind((local, rng.choice(SOURCE_PORTS)))
                break
            except OSError as exc:
                last: OSError = exc
        else:
            raise last
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _hops(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if (level, kind) in (
            (socket.IPPROTO_IP, _IP_TTL),
            (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT),
        ) and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder)
    return None


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while sock.recv(4096):
            pass
