"""Flow rescue: established TCP sessions and PMTUD survive changes of the server set.

The pure part: :mod:`.model` (the desired data path from config and host facts),
:mod:`.render` (nftables text), :mod:`.diff` (installed vs desired), :mod:`.counters`
and :mod:`.mtu`. The kernel shell: :mod:`.kernel` (``RescueKernel``: ``read_installed``,
``apply``, ``remove``, ``counters``; blocking, or ``AsyncRescueKernel``). See
docs/rescue.md for the mechanism.
"""

from anycast_announcer.rescue.counters import PeerCounters, RescueCounters, Traffic
from anycast_announcer.rescue.model import Family, RescuePlan, build_plan, plan_from_settings

__all__ = [
    "Family",
    "PeerCounters",
    "RescueCounters",
    "RescuePlan",
    "Traffic",
    "build_plan",
    "plan_from_settings",
]
