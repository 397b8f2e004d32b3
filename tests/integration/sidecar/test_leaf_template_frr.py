"""The production leaf template of docs/leaf.md, run by FRR, against real sidecars.

``containerlab/leaf-template`` is the single-leaf lab with leaf1 running the template
verbatim (``tests/unit/test_leaf_template.py`` checks that it is the documented text).
Here two sidecars peer with it as dynamic neighbours from the listen ranges, and each
rule of the template is seen working on leaf1:

- FRR accepted every command (a mistyped line would only be logged);
- both servers' sessions come up without a ``neighbor`` line per server;
- link bandwidth becomes kernel next-hop weights (10G vs 1G);
- a prefix outside the anycast range is refused by the inbound policy;
- GRACEFUL_SHUTDOWN gives the path local-pref 0 and takes it out of the FIB, while the
  route is still announced.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    Running,
    Sidecar,
    announced_via,
    bgp_paths,
    kernel_nexthops,
    sidecar_config,
)
from tests.lablib import REPO_ROOT, deployed, require_lab_host, wait_until

pytestmark = pytest.mark.integration

TOPOLOGY = REPO_ROOT / "containerlab" / "leaf-template" / "leaf-template.clab.yml"
TEMPLATE = REPO_ROOT / "containerlab" / "leaf-template" / "leaf1" / "frr.conf"
SRV1, SRV2 = "10.0.1.2", "10.0.2.2"
OUTSIDE = "10.254.0.1/32"  # not in ANYCAST-V4


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_host()
    with deployed(TOPOLOGY) as deployed_lab:
        yield deployed_lab


@pytest.fixture
def running(lab: Lab, tmp_path: Path) -> Iterator[Running]:
    state = Running(lab, tmp_path)
    try:
        yield state
    finally:
        state.close()


def template_commands() -> list[str]:
    """The template's command lines, comments and the version banner left out."""
    skip = ("!", "frr version", "frr defaults", "exit")
    return [
        line.strip()
        for line in TEMPLATE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith(skip)
    ]


def established(lab: Lab) -> set[str]:
    summary = lab.vtysh_json("leaf1", "show bgp summary json")
    peers: set[str] = set()
    for family in ("ipv4Unicast", "ipv6Unicast"):
        for address, peer in (summary.get(family) or {}).get("peers", {}).items():
            if peer.get("state") == "Established":
                peers.add(address)
    return peers


def test_frr_accepts_every_line_of_the_template(lab: Lab) -> None:
    """Every command of the template is in leaf1's running config, as FRR writes it."""
    running_config = lab.run("leaf1", ["vtysh", "-N", lab.ns("leaf1"), "-c", "show running-config"])
    shown = {line.strip() for line in running_config.stdout.splitlines()}
    # FRR writes the GSHUT community by its number and adds defaults it prints itself.
    missing = [
        command
        for command in template_commands()
        if command not in shown and command.replace("graceful-shutdown", "65535:0") not in shown
    ]
    assert not missing, f"FRR did not take these lines:\n{missing}\n{running_config.stdout}"


def test_servers_weights_policy_and_graceful_shutdown(
    lab: Lab, running: Running, tmp_path: Path
) -> None:
    """Dynamic sessions, UCMP weights, the prefix filter and GSHUT, on one pair of servers."""
    running.service("srv1")
    running.service("srv2")
    # srv1 also has an address outside the anycast range and tries to announce it.
    lab.run("srv1", ["ip", "addr", "replace", OUTSIDE, "dev", "lo"], check=True)
    drain_file = tmp_path / "DRAIN"
    config = sidecar_config("srv1", 10_000)
    config["prefixes"].append({"prefix": OUTSIDE, "services": ["web"], "bandwidth_mbps": 10_000})
    config["drain"] = {"drain_file": str(drain_file), "graceful_shutdown_hold": 60}
    srv1 = Sidecar(lab, "srv1", config, tmp_path)
    running.sidecars.append(srv1)
    srv1.start()
    running.sidecar("srv2", 1_000)

    wait_until(
        lambda: {SRV1, SRV2, "fd00:1::2", "fd00:2::2"} <= established(lab),
        timeout=20,
        message="leaf1 should establish both servers' sessions from its listen ranges",
    )

    def both_servers() -> dict[str, int] | None:
        hops = kernel_nexthops(lab, "leaf1", ANYCAST_V4)
        return hops if len(hops) == 2 else None

    weights = wait_until(
        both_servers,
        timeout=15,
        message="leaf1 should route the anycast prefix via both servers",
    )
    assert weights[SRV1] > 5 * weights[SRV2], f"10G vs 1G should weigh about 10:1: {weights}"

    # The route outside the anycast range was sent (ExaBGP acknowledged it to leaf1's
    # session) but refused by SERVERS-IN-V4.
    wait_until(
        lambda: any(e.get("prefix") == OUTSIDE for e in srv1.events("route_announced")),
        timeout=10,
        message=f"srv1 should have announced {OUTSIDE}",
    )
    assert bgp_paths(lab, "leaf1", OUTSIDE) == []
    assert kernel_nexthops(lab, "leaf1", OUTSIDE) == {}

    # Drain srv1 through its drain file: GSHUT first, withdrawal only after 60 s.
    drain_file.touch()

    def graceful() -> dict[str, Any] | None:
        for path in bgp_paths(lab, "leaf1", ANYCAST_V4):
            # FRR shows 65535:0 by name ("gracefulShutdown" in the JSON list).
            communities = path.get("community", {}).get("list", [])
            if path["nexthops"][0]["ip"] == SRV1 and "gracefulShutdown" in communities:
                return path
        return None

    path = wait_until(graceful, timeout=15, message="srv1's path never carried 65535:0")
    assert path.get("locPrf") == 0
    wait_until(
        lambda: announced_via(lab, SRV2),
        timeout=10,
        message="leaf1 should stop using srv1 once it carries GRACEFUL_SHUTDOWN",
    )
