"""BFD for the sidecar's BGP peers (RFC 5880 asynchronous mode, RFC 5881 single hop).

ExaBGP has no BFD, so the sidecar speaks it itself. The protocol is a sans-IO machine per
session (``Session``: datagrams and timer expiries in, with ``now``; packets and state
changes out); only the UDP transport lives in the shell (``speaker``, one thread for every
session, which transmits only while the event loop keeps beating).
"""

from anycast_announcer.bfd._packet import (
    BFD_VERSION,
    PACKET_LENGTH,
    BfdPacketError,
    ControlPacket,
    Diag,
    State,
    decode,
    encode,
)
from anycast_announcer.bfd._session import (
    SLOW_TX_US,
    Effect,
    Session,
    SessionSnapshot,
    StateChanged,
    Timers,
    Transmit,
)

__all__ = [
    "BFD_VERSION",
    "PACKET_LENGTH",
    "SLOW_TX_US",
    "BfdPacketError",
    "ControlPacket",
    "Diag",
    "Effect",
    "Session",
    "SessionSnapshot",
    "State",
    "StateChanged",
    "Timers",
    "Transmit",
    "decode",
    "encode",
]
