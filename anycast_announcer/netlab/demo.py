"""``make demo``: the whole job on a lab, in a minute or two.

Deploys a lab on network namespaces (the leaf/spine fabric by default, or the
single-leaf lab), starts a TCP service and the sidecar on every server, prints the
weighted routes the routers installed next to the split of real client connections,
kills one service to show the withdrawal; on the leaf/spine fabric, whose servers run
flow rescue, it then holds long-lived sessions across a failure with rescue off and on
and counts what broke (demo_rescue.py). It destroys the lab, whatever happens.

    python -m anycast_announcer.netlab.demo [--lab leaf-spine|single-leaf]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import traffic
from anycast_announcer.netlab.demo_rescue import SESSIONS, Servers, sessions_act
from anycast_announcer.netlab.errors import NetlabError
from anycast_announcer.netlab.lab import Lab

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "10.255.0.1/32"
CONNECTIONS = 2000


@dataclass(frozen=True)
class DemoLab:
    """What the demo needs to know about a lab."""

    name: str
    servers: dict[str, float]
    """Server -> nominal bandwidth in Gbit/s (what its share should follow)."""
    routers: tuple[str, ...]
    """Routers whose route to the prefix is printed, nearest to the client last."""
    victim: str
    """The server whose service is killed."""
    victim_router: str
    """The router that must drop the victim."""

    @property
    def topology(self) -> Path:
        return REPO_ROOT / "containerlab" / self.name / f"{self.name}.clab.yml"

    def config(self, server: str) -> Path:
        return self.topology.parent / server / "anycast-announcer.yaml"


LABS = {
    "leaf-spine": DemoLab(
        "leaf-spine",
        {"srv1": 10, "srv2": 25, "srv3": 1, "srv4": 10},
        ("leaf1", "spine1", "leaf3"),
        victim="srv2",
        victim_router="leaf1",
    ),
    "single-leaf": DemoLab(
        "single-leaf",
        {"srv1": 10, "srv2": 1},
        ("leaf1",),
        victim="srv2",
        victim_router="leaf1",
    ),
}


def _say(text: str = "") -> None:
    print(text, flush=True)


def _wait(what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise NetlabError(f"timed out after {timeout:.0f}s waiting for {what}")


def _route(lab: Lab, router: str) -> list[str]:
    output = lab.run(router, ["ip", "route", "show", PREFIX]).stdout
    return [line.rstrip() for line in output.splitlines() if line.strip()]


def _next_hops(lab: Lab, router: str) -> int:
    routes = json.loads(lab.run(router, ["ip", "-j", "route", "show", PREFIX]).stdout or "[]")
    return sum(len(route.get("nexthops", [route])) for route in routes)


def _shares(lab: Lab, count: int = CONNECTIONS) -> dict[str, Any]:
    """Which server answered each of ``count`` new connections from the client."""
    output = lab.run(
        "client",
        traffic.command("shares", "10.255.0.1:8080", count=count),
        timeout=180,
    ).stdout
    result: dict[str, Any] = json.loads(output)
    return result


def _print_state(lab: Lab, demo: DemoLab, alive: dict[str, float]) -> None:
    for router in demo.routers:
        _say(f"{router}# ip route show {PREFIX}")
        for line in _route(lab, router) or ["(no route)"]:
            _say("    " + line)
    shares = _shares(lab)
    answers = shares["answers"]
    total = sum(alive.values())
    _say(
        f"\n  {'server':8} {'bandwidth':>10} {'expected share':>15} "
        f"{'measured share of ' + str(CONNECTIONS) + ' connections':>40}"
    )
    for server, gbps in demo.servers.items():
        expected = 100 * alive.get(server, 0) / total if total else 0.0
        measured = 100 * answers.get(server, 0) / CONNECTIONS
        _say(f"  {server:8} {gbps:>7g} G {expected:>14.1f}% {measured:>39.1f}%")
    _say(f"  failed connections: {shares['failed']}")


def run(demo: DemoLab) -> int:
    """Run the demo on one lab; 0 on success."""
    lab = Lab.from_file(demo.topology, name=f"demo{secrets.token_hex(2)}")
    logs = Path(tempfile.mkdtemp(prefix="anycast-demo-"))
    try:
        _say(
            f"== deploying {demo.topology.relative_to(REPO_ROOT)} as lab {lab.name} "
            "(network namespaces, FRR on every router)"
        )
        lab.deploy()
        servers = Servers(lab, {server: demo.config(server) for server in demo.servers}, logs)
        servers.start()
        summary = ", ".join(f"{s} {g:g}G" for s, g in demo.servers.items())
        _say(f"== services and sidecars started on {summary}")
        nearest = demo.routers[0]
        elapsed = _wait(
            "every server in the fabric",
            lambda: _shares_ready(lab, demo),
        )
        _say(
            f"   every router converged {elapsed:.1f}s after start "
            f"({_next_hops(lab, nearest)} next hops on {nearest})\n"
        )
        _print_state(lab, demo, dict(demo.servers))

        _say(f"\n== killing the service on {demo.victim}: its sidecar withdraws the prefix")
        before = _next_hops(lab, demo.victim_router)
        servers.kill_service(demo.victim)
        elapsed = _wait(
            f"{demo.victim}'s withdrawal on {demo.victim_router}",
            lambda: _next_hops(lab, demo.victim_router) < before,
        )
        _say(
            f"   {demo.victim_router} dropped {demo.victim} {elapsed:.2f}s after the kill "
            "(the kernel reported the closed listener at once, then BGP)\n"
        )
        alive = {s: g for s, g in demo.servers.items() if s != demo.victim}
        _wait("the fabric to settle", lambda: _shares_ready(lab, demo, alive), timeout=30)
        _print_state(lab, demo, alive)
        _say(f"\n{demo.victim}# anycast-announcer status")
        status = lab.run(
            demo.victim, [sys.executable, "-m", "anycast_announcer", "status"], check=False
        )
        for line in (status.stdout or status.stderr).splitlines():
            _say("    " + line)
        if all("rescue" in config for config in servers.configs.values()):
            servers.start_service(demo.victim)
            _rescue_act(lab, demo, servers)
        _say(f"\n   sidecar logs (JSON lines): {logs}")
        return 0
    except NetlabError as error:
        print(f"demo failed: {error}", file=sys.stderr)
        return 1
    finally:
        _say("\n== destroying the lab")
        lab.destroy()


def _rescue_act(lab: Lab, demo: DemoLab, servers: Servers) -> None:
    _say(
        f"\n== {SESSIONS} long-lived sessions, then {demo.victim}'s service fails: "
        "flow rescue off, then on"
    )
    results = sessions_act(
        servers, demo.victim, lambda alive: _shares_ready(lab, demo, dict.fromkeys(alive, 1.0))
    )
    _say(
        f"\n  {'rescue':7} {'sessions':>9} {'on ' + demo.victim:>10} "
        f"{'broken there':>13} {'broken on healthy servers':>26}"
    )
    for label, row in results.items():
        _say(
            f"  {label:7} {row['sessions']:>9} {row['on_victim']:>10} {row['own']:>13} "
            f"{row['healthy']:>26}"
        )
    _say(
        f"\n   {demo.victim}'s own sessions die with its service either way. Without rescue\n"
        "   the rehash also resets sessions of servers that did nothing wrong; with rescue\n"
        "   those servers hand the packets on to the owner (docs/rescue.md)."
    )


def _shares_ready(lab: Lab, demo: DemoLab, alive: dict[str, float] | None = None) -> bool:
    """Every live server answers a handful of connections, and no other does."""
    alive = alive if alive is not None else demo.servers
    result = _shares(lab, count=200)
    return result["failed"] == 0 and set(result["answers"]) == set(alive)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", choices=sorted(LABS), default="leaf-spine")
    return run(LABS[parser.parse_args().lab])


if __name__ == "__main__":
    raise SystemExit(main())
