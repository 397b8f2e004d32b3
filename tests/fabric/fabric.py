"""The leaf-spine lab as the fabric tests drive it: servers, the expected weights, probes.

The model of what each router should hold (:func:`expected_shares`) follows FRR's
behaviour with the transitive link-bandwidth community: a leaf weights its servers by the
bandwidth each announces on its session (a dual-homed server splits its bandwidth over its
established sessions), re-originates the sum toward the spines, and the spines and the
border leaf weight their next hops by those sums.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from anycast_announcer.netlab import Lab, traffic
from tests.integration.sidecars import Service, Sidecar, bgp_paths
from tests.lablib import REPO_ROOT, wait_until

LAB_DIR = REPO_ROOT / "containerlab" / "leaf-spine"
TOPOLOGY = LAB_DIR / "leaf-spine.clab.yml"
PLAN = yaml.safe_load((Path(__file__).parent / "expected.yaml").read_text(encoding="utf-8"))
SERVERS = ("srv1", "srv2", "srv3", "srv4")
MEMBER = {"srv1": "10.2.1.2", "srv2": "10.2.2.2", "srv3": "10.2.3.2", "srv4": "10.2.4.2"}
"""Each server's rescue member address (its member route, learnt from the fabric)."""
ROUTERS = ("leaf1", "leaf2", "spine1", "spine2", "leaf3")
SPINES = ("spine1", "spine2")
SERVER_LEAVES = ("leaf1", "leaf2")
ANYCAST = {4: "10.255.0.1/32", 6: "fd00:255::1/128"}
TARGET = {4: "10.255.0.1:8080", 6: "[fd00:255::1]:8080"}
# FRR before 9.1 gives each next hop floor(100 * its bandwidth / the total) as kernel
# weight (8.4, Debian 12: 62/25/12 for 25/10/5); float rounding of the community can take
# one more off (85:14 for 34:6). From 9.1 zebra normalises the weights itself, the largest
# to 254 (FRR PR #14553; 10.3, Debian 13: 254/101/50 for 25/10/5). A weight within 1 of
# the ideal share on that scale is therefore correct.
WEIGHT_TOLERANCE = 1.01
ZEBRA = "/usr/lib/frr/zebra"
_LB_RE = re.compile(r"LB:(\d+):(\d+)")


def server_config(node: str) -> dict[str, Any]:
    """The lab's own sidecar config of ``node``."""
    path = LAB_DIR / node / "anycast-announcer.yaml"
    config: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return config


def with_bandwidth(config: Mapping[str, Any], mbps: float) -> dict[str, Any]:
    """A copy of a sidecar config announcing every prefix with ``mbps``."""
    copy = json.loads(json.dumps(config))
    for prefix in copy["prefixes"]:
        prefix["bandwidth_mbps"] = mbps
    return dict(copy)


def expected_shares(
    bandwidth: Mapping[str, float], homes: Mapping[str, Iterable[str]]
) -> dict[str, dict[str, float]]:
    """Router -> {next hop's name: share of that router's traffic}.

    ``bandwidth`` holds the servers that announce (server -> Mbit/s), ``homes`` the leaves
    each one has an established session with. A leaf without servers routes through the
    spines, which then carry equal sums.
    """
    per_leaf: dict[str, dict[str, float]] = {leaf: {} for leaf in SERVER_LEAVES}
    for server, mbps in bandwidth.items():
        leaves = list(homes[server])
        for leaf in leaves:
            per_leaf[leaf][server] = mbps / len(leaves)
    sums = {leaf: sum(servers.values()) for leaf, servers in per_leaf.items()}
    total = sum(sums.values())
    result: dict[str, dict[str, float]] = {}
    for leaf, servers in per_leaf.items():
        if sums[leaf]:
            result[leaf] = {server: bw / sums[leaf] for server, bw in servers.items()}
        else:
            result[leaf] = {spine: 0.5 for spine in SPINES}
    for spine in SPINES:
        result[spine] = {leaf: value / total for leaf, value in sums.items() if value}
    result["leaf3"] = {spine: 0.5 for spine in SPINES}
    return result


def server_shares(bandwidth: Mapping[str, float]) -> dict[str, float]:
    """Each server's ideal share of new connections: its bandwidth over the total."""
    total = sum(bandwidth.values())
    return {server: mbps / total for server, mbps in bandwidth.items()}


def kernel_weights(lab: Lab, node: str, prefix: str) -> dict[str, int]:
    """Next hop name (from the plan, by interface) -> kernel weight of ``prefix`` on ``node``."""
    family = "-6" if ":" in prefix else "-4"
    out = lab.run(node, ["ip", family, "-j", "route", "show", prefix], check=True).stdout
    names: Mapping[str, str] = PLAN["next_hops"][node]
    weights: dict[str, int] = {}
    for route in json.loads(out or "[]"):
        if route.get("protocol") != "bgp":
            continue
        hops = route.get("nexthops") or [route]
        for hop in hops:
            dev = hop.get("dev", "?")
            weights[names.get(dev, dev)] = int(hop.get("weight", 1))
    return weights


@functools.cache
def frr_version() -> tuple[int, int]:
    """The installed FRR's major and minor version (from ``zebra --version``)."""
    out = subprocess.run([ZEBRA, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"version (\d+)\.(\d+)", out)
    assert match is not None, f"no version in {out!r}"
    return int(match[1]), int(match[2])


def ideal_weights(shares: Mapping[str, float]) -> dict[str, float]:
    """The kernel weights the installed FRR aims at for ``shares`` (before flooring)."""
    if frr_version() < (9, 1):
        return {hop: 100 * share for hop, share in shares.items()}
    largest = max(shares.values(), default=0.0)
    return {hop: 254 * share / largest if largest else 0.0 for hop, share in shares.items()}


def weights_match(weights: Mapping[str, int], shares: Mapping[str, float]) -> bool:
    """True if the kernel weights are FRR's quantisation of ``shares``."""
    if set(weights) != set(shares):
        return False
    if len(weights) == 1:
        return True  # a single next hop carries everything, whatever its weight
    ideal = ideal_weights(shares)
    return all(abs(weights[hop] - ideal[hop]) <= WEIGHT_TOLERANCE for hop in shares)


def received_bandwidth(lab: Lab, node: str, prefix: str) -> dict[str, float]:
    """Peer address -> link bandwidth (bytes/s) of the paths ``node`` has for ``prefix``."""
    values: dict[str, float] = {}
    for path in bgp_paths(lab, node, prefix):
        match = _LB_RE.search(path.get("extendedCommunity", {}).get("string", ""))
        peer = path.get("peer", {}).get("peerId") or path["nexthops"][0]["ip"]
        if match:
            values[str(peer)] = float(match.group(2))
    return values


class Fabric:
    """The deployed lab with a service and a sidecar per server, and their state."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.configs = {node: server_config(node) for node in SERVERS}
        self.services: dict[str, Service] = {}
        self.sidecars: dict[str, Sidecar] = {}
        self.bandwidth: dict[str, float] = {}  # what each running sidecar announces
        self.rescue_enabled = True
        """Whether the sidecars run with their ``rescue:`` section (the lab's default)."""

    # -- processes -----------------------------------------------------------------

    def base_bandwidth(self, node: str) -> float:
        return float(self.configs[node]["prefixes"][0]["bandwidth_mbps"])

    def start_service(self, node: str) -> None:
        service = Service(self.lab, node)
        service.start()
        self.services[node] = service

    def kill_service(self, node: str) -> None:
        self.services[node].kill()

    def service_running(self, node: str) -> bool:
        service = self.services.get(node)
        return bool(service and service.process and service.process.poll() is None)

    def start_sidecar(self, node: str, mbps: float | None = None) -> Sidecar:
        mbps = self.base_bandwidth(node) if mbps is None else mbps
        sidecar = Sidecar(self.lab, node, with_bandwidth(self.configs[node], mbps), self.workdir)
        sidecar.start()
        self.sidecars[node] = sidecar
        self.bandwidth[node] = mbps
        return sidecar

    def stop_sidecar(self, node: str) -> None:
        """SIGTERM: the sidecar withdraws, then exits."""
        self.sidecars[node].stop()
        self.bandwidth.pop(node, None)

    def sidecar_running(self, node: str) -> bool:
        sidecar = self.sidecars.get(node)
        return bool(sidecar and sidecar.process and sidecar.process.poll() is None)

    def set_link(self, node: str, interface: str, up: bool) -> None:
        self.lab.run(node, ["ip", "link", "set", interface, "up" if up else "down"])

    def stop_all(self) -> None:
        for sidecar in self.sidecars.values():
            sidecar.stop()
        for service in self.services.values():
            service.kill()

    # -- the healthy baseline ------------------------------------------------------

    def baseline_bandwidth(self) -> dict[str, float]:
        return {node: self.base_bandwidth(node) for node in SERVERS}

    def restore(self, timeout: float = 30.0) -> None:
        """Every service and sidecar up with the lab's config, every link up; wait for it."""
        for node, links in PLAN["server_links"].items():
            for interface in links.values():
                self.set_link(node, interface, up=True)
            # IPv6 drops a multipath default route's hop through a link that went down.
            self._server_default_routes(node)
        for node in SERVERS:
            if not self.service_running(node):
                self.start_service(node)
            if not self.sidecar_running(node) or self.bandwidth.get(node) != self.base_bandwidth(
                node
            ):
                if node in self.sidecars:
                    self.stop_sidecar(node)
                self.start_sidecar(node)
        for family in (4, 6):
            self.wait_converged(
                self.baseline_bandwidth(),
                PLAN["homes"],
                family,
                timeout=timeout,
                message="the fabric never got back to healthy",
            )
        if self.rescue_enabled:
            self.wait_members(timeout=timeout)

    def installed_peers(self, node: str) -> set[str]:
        """The peers of ``node``'s latest rescue apply (its data path), from its log."""
        applied = self.sidecars[node].events("rescue_applied")
        return set(applied[-1].get("peers", [])) if applied else set()

    def wait_members(self, timeout: float) -> None:
        """Every server's data path holds every other server, learnt from member routes."""

        def complete() -> bool:
            return all(
                {MEMBER[other] for other in SERVERS if other != node} <= self.installed_peers(node)
                for node in SERVERS
            )

        try:
            wait_until(complete, timeout=timeout, message="rescue membership", interval=0.1)
        except AssertionError as exc:
            seen = {node: sorted(self.installed_peers(node)) for node in SERVERS}
            raise AssertionError(
                f"{exc}: the servers never learnt each other as members: {seen}\n"
                f"{self.sidecar_tails()}"
            ) from None

    def _server_default_routes(self, node: str) -> None:
        links: Mapping[str, str] = PLAN["server_links"][node]
        for family, fmt in ((4, "10.2.{}.1"), (6, "fd00:2:{}::1")):
            argv = ["ip", f"-{family}", "route", "replace", "default"]
            for leaf, interface in links.items():
                index = self._link_index(node, leaf)
                argv += ["nexthop", "via", fmt.format(index), "dev", interface]
            self.lab.run(node, argv)

    @staticmethod
    def _link_index(node: str, leaf: str) -> int:
        # The /24 (and /64) index of a server link, as the topology numbers them.
        return {("srv4", "leaf1"): 4, ("srv4", "leaf2"): 5}[(node, leaf)]

    # -- observing -------------------------------------------------------------------

    def mismatches(
        self, bandwidth: Mapping[str, float], homes: Mapping[str, Iterable[str]], family: int
    ) -> dict[str, Any]:
        """Routers whose kernel weights differ from the model: {router: (seen, wanted)}."""
        expected = expected_shares(bandwidth, homes)
        wrong: dict[str, Any] = {}
        for router in ROUTERS:
            weights = kernel_weights(self.lab, router, ANYCAST[family])
            if not weights_match(weights, expected[router]):
                ideal = ideal_weights(expected[router]) if expected[router] else {}
                wanted = {hop: round(weight, 1) for hop, weight in ideal.items()}
                wrong[router] = {"kernel": weights, "want": wanted}
        return wrong

    def wait_converged(
        self,
        bandwidth: Mapping[str, float],
        homes: Mapping[str, Iterable[str]],
        family: int,
        timeout: float,
        message: str,
    ) -> None:
        last: dict[str, Any] = {}

        def converged() -> bool:
            nonlocal last
            last = self.mismatches(bandwidth, homes, family)
            return not last

        try:
            wait_until(converged, timeout=timeout, message=message, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nrouters off the model (IPv{family}): {last}\n{self.sidecar_tails()}"
            ) from None

    def sidecar_tails(self) -> str:
        return "\n".join(
            f"--- {node}:\n{sidecar.log_tail(8)}" for node, sidecar in self.sidecars.items()
        )

    def shares(self, family: int, count: int = 2000) -> dict[str, Any]:
        """Open ``count`` new connections from the client; the JSON result of ``shares``."""
        result = self.lab.run(
            "client",
            traffic.command("shares", TARGET[family], count=count),
            timeout=120,
        )
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def hold(self, family: int, sessions: int, ready_file: Path, interval: float = 0.25) -> Holder:
        return Holder(self, family, sessions, ready_file, interval)

    # -- flow rescue -------------------------------------------------------------------

    def rescue_off(self) -> None:
        """Reload every sidecar without its ``rescue:`` section (it stops looking after the
        data path, which stays), then ``anycast-announcer rescue remove`` on every server."""
        if self.rescue_enabled:
            self._reload_rescue(enabled=False)
        for node in SERVERS:
            self.lab.run(node, [sys.executable, "-m", "anycast_announcer", "rescue", "remove"])

    def rescue_on(self) -> None:
        """Reload every sidecar with the lab's own config: each installs rescue again."""
        if not self.rescue_enabled:
            self._reload_rescue(enabled=True)
            # The servers learn each other again from their member routes.
            self.wait_members(timeout=30)

    def _reload_rescue(self, *, enabled: bool) -> None:
        self.rescue_enabled = enabled
        event = "rescue_applied" if enabled else "rescue_unconfigured"
        seen = {node: len(self.sidecars[node].events(event)) for node in SERVERS}
        for node in SERVERS:
            config = with_bandwidth(self.configs[node], self.bandwidth[node])
            if not enabled:
                config.pop("rescue", None)
            self.sidecars[node].write_config(config)
            self.sidecars[node].signal(signal.SIGHUP)
        for node in SERVERS:
            wait_until(
                lambda node=node: len(self.sidecars[node].events(event)) > seen[node],  # type: ignore[misc]
                timeout=30,
                message=f"{node}'s sidecar never logged {event}:\n{self.sidecars[node].log_tail()}",
            )

    def rescue_counters(self, node: str) -> dict[str, Any]:
        """``rescue status --json`` counters of a server."""
        out = self.lab.run(
            node, [sys.executable, "-m", "anycast_announcer", "rescue", "status", "--json"]
        ).stdout
        counters: dict[str, Any] = json.loads(out)["counters"]
        return counters

    def flush_pmtu(self) -> None:
        """Forget the path MTUs the servers learnt."""
        for node in SERVERS:
            self.lab.run(node, ["ip", "route", "flush", "cache"])
            self.lab.run(node, ["ip", "-6", "route", "flush", "cache"])

    def downloads(self, family: int, count: int, size: int, timeout: float) -> dict[str, Any]:
        """``count`` downloads of ``size`` bytes from the client; completed/hung per server."""
        result = self.lab.run(
            "client",
            traffic.command("downloads", TARGET[family], count=count, size=size, timeout=timeout),
            timeout=timeout * count + 60,
        )
        data: dict[str, Any] = json.loads(result.stdout)
        return data


class Holder:
    """A ``traffic hold`` run in the client namespace, stopped with SIGTERM."""

    def __init__(
        self,
        fabric: Fabric,
        family: int,
        sessions: int,
        ready_file: Path,
        interval: float = 0.25,
    ) -> None:
        ready_file.unlink(missing_ok=True)
        self.ready_file = ready_file
        self.process = fabric.lab.popen(
            "client",
            traffic.command(
                "hold",
                TARGET[family],
                sessions=sessions,
                interval=interval,
                timeout=5,
                ready_file=ready_file,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        def ready() -> dict[str, Any]:
            if self.process.poll() is not None:
                raise AssertionError(f"hold exited early: {self.process.communicate()}")
            if not self.ready_file.exists():
                return {}  # falsy: not yet
            data: dict[str, Any] = json.loads(self.ready_file.read_text(encoding="utf-8"))
            return data

        return wait_until(ready, timeout=timeout, message="long-lived sessions never opened")

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=30)
        if self.process.returncode != 0:
            raise AssertionError(f"hold failed ({self.process.returncode}): {err[-2000:]}")
        data: dict[str, Any] = json.loads(out)
        return data

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=10)
