"""The decision core, sans-IO: inputs in, effects out, time as an argument.

``SidecarCore`` is the object; ``inputs`` and ``effects`` are the values that cross its
boundary. Nothing here runs an event loop or touches a file, a socket or a clock.
"""

from anycast_announcer.core import effects, inputs
from anycast_announcer.core.inputs import Instant
from anycast_announcer.core.sidecar import CoreClosedError, Logger, SidecarCore

__all__ = ["CoreClosedError", "Instant", "Logger", "SidecarCore", "effects", "inputs"]
