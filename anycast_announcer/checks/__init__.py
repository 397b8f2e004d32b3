"""Health probes: one module per check type, all returning a ``ProbeResult``.

Each probe is bounded by its timeout, never blocks the event loop, reports a failed service
as ``ok=False`` with a short reason and a ``ProbeCategory`` rather than raising, and lets
cancellation through after cleaning up (sockets closed, process groups killed and reaped).
A result of category ``SIDECAR`` means the sidecar could not probe at all (out of
descriptors, memory or processes): it is no evidence about the service.
"""

from anycast_announcer.checks._prober import Probe, Prober
from anycast_announcer.checks._result import ProbeCategory, ProbeResult

__all__ = ["Probe", "ProbeCategory", "ProbeResult", "Prober"]
