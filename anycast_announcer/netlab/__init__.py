"""A Docker-free runner for containerlab topology files, built on network namespaces.

It is the lab the sidecar's integration tests and demo run in, and it stands
apart from the sidecar: nothing here imports the rest of ``anycast_announcer``.
"""

from anycast_announcer.netlab.errors import LabError, NetlabError, TopologyError
from anycast_announcer.netlab.lab import Lab, NodeStatus, ProcessStatus
from anycast_announcer.netlab.plan import BgpWait, PendingPeer
from anycast_announcer.netlab.topology import Bind, Endpoint, Link, Node, Topology

__all__ = [
    "BgpWait",
    "Bind",
    "Endpoint",
    "Lab",
    "LabError",
    "Link",
    "NetlabError",
    "Node",
    "NodeStatus",
    "PendingPeer",
    "ProcessStatus",
    "Topology",
    "TopologyError",
]
