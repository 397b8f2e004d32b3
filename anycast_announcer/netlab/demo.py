"""``make demo``: the whole job on the single-leaf lab, in about half a minute.

Deploys containerlab/single-leaf on network namespaces, starts a TCP service and the
sidecar on both servers (10 Gbit/s and 1 Gbit/s), prints leaf1's weighted route and the
traffic split of real client connections, kills one service to show the withdrawal, and
destroys the lab, whatever happens on the way.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anycast_announcer.netlab.errors import NetlabError
from anycast_announcer.netlab.lab import Lab

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = REPO_ROOT / "containerlab" / "single-leaf"
TOPOLOGY = LAB_DIR / "single-leaf.clab.yml"
SERVERS = {"srv1": "10.0.1.2", "srv2": "10.0.2.2"}
PREFIX = "10.255.0.1/32"
CONNECTIONS = 1000


def _say(text: str = "") -> None:
    print(text, flush=True)


def _wait(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise NetlabError(f"timed out after {timeout:.0f}s waiting for {what}")


def _next_hops(lab: Lab) -> dict[str, int]:
    routes = json.loads(lab.run("leaf1", ["ip", "-j", "route", "show", PREFIX]).stdout or "[]")
    hops: dict[str, int] = {}
    for route in routes:
        for hop in route.get("nexthops", [route] if "gateway" in route else []):
            hops[hop["gateway"]] = int(hop.get("weight", 1))
    return hops


def _shares(lab: Lab) -> dict[str, Any]:
    output = lab.run(
        "client",
        [sys.executable, "-m", "anycast_announcer.netlab.traffic", "shares",
         "--target", "10.255.0.1:8080", "--count", str(CONNECTIONS)],
        timeout=120,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def _print_state(lab: Lab) -> None:
    _say("leaf1# ip route show " + PREFIX)
    for line in lab.run("leaf1", ["ip", "route", "show", PREFIX]).stdout.splitlines():
        _say("    " + line)
    paths = lab.vtysh_json("leaf1", f"show bgp ipv4 unicast {PREFIX} json").get("paths", [])
    hops = _next_hops(lab)
    total_weight = sum(hops.values()) or 1
    shares = _shares(lab)
    answers = shares["answers"]
    _say(f"\n  {'server':8} {'announced bandwidth':36} {'kernel weight':14} "
         f"{'expected':9} {'measured share of ' + str(CONNECTIONS) + ' connections'}")
    for node, address in SERVERS.items():
        bandwidth = next(
            (p.get("extendedCommunity", {}).get("string", "?") for p in paths
             if p.get("nexthops", [{}])[0].get("ip") == address),
            "(withdrawn)",
        )
        weight = hops.get(address, 0)
        _say(f"  {node:8} {bandwidth:36} {weight:<14} {100 * weight / total_weight:7.1f}%  "
             f"{100 * answers.get(node, 0) / CONNECTIONS:6.1f}%")
    _say(f"  failed connections: {shares['failed']}")


def main() -> int:
    """Run the demo; 0 on success."""
    lab = Lab.from_file(TOPOLOGY, name=f"demo{secrets.token_hex(2)}")
    logs = Path(tempfile.mkdtemp(prefix="anycast-demo-"))
    try:
        _say(f"== deploying {TOPOLOGY.relative_to(REPO_ROOT)} as lab {lab.name} "
             "(network namespaces, FRR on leaf1)")
        lab.deploy()
        services: dict[str, subprocess.Popen[Any]] = {}
        for node in SERVERS:
            services[node] = lab.popen(
                node,
                [sys.executable, "-m", "anycast_announcer.netlab.service", "--name", node,
                 "--listen", "10.255.0.1:8080", "--listen", "[fd00:255::1]:8080"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with (logs / f"{node}.log").open("wb") as log:
                lab.popen(
                    node,
                    [sys.executable, "-m", "anycast_announcer", "run",
                     "-c", str(LAB_DIR / node / "anycast-announcer.yaml")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _say("== sidecars started on srv1 (10G) and srv2 (1G); waiting for leaf1 to install "
             "both paths")
        elapsed = _wait("both servers in leaf1's FIB", lambda: len(_next_hops(lab)) == 2)
        _say(f"   converged {elapsed:.1f}s after start\n")
        _print_state(lab)

        _say("\n== killing the service on srv2: its sidecar withdraws the prefix")
        services["srv2"].kill()
        services["srv2"].wait()
        elapsed = _wait("srv2's withdrawal", lambda: set(_next_hops(lab)) == {SERVERS["srv1"]})
        _say(f"   leaf1 dropped srv2 {elapsed:.2f}s after the kill "
             "(interval 0.5 s x fall 2 + timeout 0.25 s)\n")
        _print_state(lab)
        _say("\nsrv2# anycast-announcer status")
        status = lab.run("srv2", [sys.executable, "-m", "anycast_announcer", "status"],
                         check=False)
        for line in (status.stdout or status.stderr).splitlines():
            _say("    " + line)
        _say(f"\n   sidecar logs (JSON lines): {logs}")
        return 0
    except NetlabError as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    finally:
        _say("\n== destroying the lab")
        lab.destroy()


if __name__ == "__main__":
    raise SystemExit(main())
