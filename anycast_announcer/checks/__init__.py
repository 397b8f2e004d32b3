"""Health probes: one module per check type, all returning a ``ProbeResult``.

Each probe is bounded by its timeout, never blocks the event loop, reports a failed service
as ``ok=False`` with a short reason rather than raising, and lets cancellation through after
cleaning up (sockets closed, process groups killed and reaped).
"""

from anycast_announcer.checks._prober import Probe, Prober
from anycast_announcer.checks._result import ProbeResult

__all__ = ["Probe", "ProbeResult", "Prober"]
