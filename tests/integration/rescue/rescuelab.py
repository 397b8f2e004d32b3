"""The rescue test lab (rescue.clab.yml) and what the tests do in it.

Three servers s1..s3 hold 10.255.0.1 and fd00:255::1 on lo and run the lab service on
port 8080; router r spreads flows over them with static ECMP routes, which the tests
change to stand for a withdrawal or an addition; the client holds long-lived sessions
through q. Rescue is installed with the real CLI (``anycast-announcer rescue install``)
inside each server's namespace, from one config file all servers share.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab, traffic
from anycast_announcer.netlab import service as lab_service
from tests.lablib import REPO_ROOT, deployed, require_lab_host, wait_until
from tests.prerequisites import require_command

__all__ = [
    "ANYCAST",
    "MEMBERS",
    "SERVERS",
    "TOPOLOGY",
    "RescueLab",
    "peer_total",
    "require_rescue_host",
    "rescue_lab",
    "total",
    "write_config",
]

TOPOLOGY = Path(__file__).with_name("rescue.clab.yml")
SERVERS = ("s1", "s2", "s3")
ANYCAST = {4: "10.255.0.1", 6: "fd00:255::1"}
PORT = 8080
NEXT_HOPS = {
    4: {"s1": "10.0.1.2", "s2": "10.0.2.2", "s3": "10.0.3.2"},
    6: {"s1": "fd00:0:1::2", "s2": "fd00:0:2::2", "s3": "fd00:0:3::2"},
}
MEMBERS = ["10.0.1.2", "10.0.2.2", "10.0.3.2"]

CONFIG = """\
bgp:
  local_as: 65001
  router_id: 10.0.0.1
  peers:
    - {{address: 10.0.0.254, peer_as: 65000}}
    - {{address: "fd00::254", peer_as: 65000}}
services:
  - name: web
    check: {{type: tcp, host: 10.255.0.1, port: 8080}}
prefixes:
  - {{prefix: 10.255.0.1/32, services: [web]}}
  - {{prefix: "fd00:255::1/128", services: [web]}}
rescue:
  members: [{members}]
{extra}"""


def write_config(path: Path, members: Sequence[str] = MEMBERS, extra: str = "") -> Path:
    """A sidecar config whose rescue section names ``members`` (+ ``extra`` lines)."""
    path.write_text(CONFIG.format(members=", ".join(members), extra=extra), encoding="utf-8")
    path.chmod(0o644)
    return path


def peer_total(counters: dict[str, dict[str, Any]], field: str) -> int:
    """Packets of one per-peer counter, summed over every server and peer."""
    return sum(int(peer[field]["packets"]) for node in counters.values() for peer in node["peers"])


def total(counters: dict[str, dict[str, Any]], field: str) -> int:
    """Packets of one global counter, summed over every server."""
    return sum(int(node[field]["packets"]) for node in counters.values())


def _target(family: int) -> str:
    return f"[{ANYCAST[6]}]:{PORT}" if family == 6 else f"{ANYCAST[4]}:{PORT}"


class RescueLab:
    """The deployed lab, the services on the servers and the rescue CLI."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.config = write_config(workdir / "rescue.yaml")
        self.services: dict[str, subprocess.Popen[Any]] = {}

    # -- services and paths ----------------------------------------------------------------

    def start_services(self) -> None:
        """The lab service on every server, answering with the server's name."""
        for node in SERVERS:
            self.services[node] = self.lab.popen(
                node,
                lab_service.command(node, f"{ANYCAST[4]}:{PORT}", f"[{ANYCAST[6]}]:{PORT}"),
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for node in SERVERS:
            wait_until(
                partial(self._listening, node),
                timeout=10,
                message=f"the service on {node} never listened",
            )

    def _listening(self, node: str) -> bool:
        return f":{PORT}" in self.run(node, "ss", "-Hltn").stdout

    def run(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in a node."""
        return self.lab.run(node, list(argv), check=check)

    def set_paths(self, servers: Sequence[str]) -> None:
        """r's ECMP routes (both families) go to ``servers`` only."""
        for family, prefix in ((4, "10.255.0.1/32"), (6, "fd00:255::1/128")):
            hops = [word for s in servers for word in ("nexthop", "via", NEXT_HOPS[family][s])]
            self.run("r", "ip", f"-{family}", "route", "replace", prefix, *hops)

    def isolate(self, node: str) -> None:
        """The server vanishes from the network (its link goes down): a dead server."""
        self.run(node, "ip", "link", "set", "eth1", "down")

    def reconnect(self, node: str) -> None:
        """Undo :meth:`isolate` (the default routes went with the link)."""
        index = node.removeprefix("s")
        self.run(node, "ip", "link", "set", "eth1", "up")
        self.run(node, "ip", "route", "replace", "default", "via", f"10.0.{index}.1")
        self.run(node, "ip", "-6", "route", "replace", "default", "via", f"fd00:0:{index}::1")

    def flush_pmtu(self) -> None:
        """Forget learnt path MTUs on every server."""
        for node in SERVERS:
            self.run(node, "ip", "route", "flush", "cache")
            self.run(node, "ip", "-6", "route", "flush", "cache")

    # -- rescue ----------------------------------------------------------------------------

    def cli(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``anycast-announcer ARGV`` in a node."""
        return self.run(node, sys.executable, "-m", "anycast_announcer", *argv, check=check)

    def install(self, node: str, config: Path | None = None) -> str:
        """``rescue install`` on a node; its standard output."""
        return self.cli(node, "rescue", "install", "-c", str(config or self.config)).stdout

    def install_all(self, config: Path | None = None) -> None:
        for node in SERVERS:
            self.install(node, config)

    def remove_all(self) -> None:
        for node in SERVERS:
            self.cli(node, "rescue", "remove")

    def status(self, node: str) -> dict[str, Any]:
        """``rescue status --json`` of a node."""
        document: dict[str, Any] = json.loads(self.cli(node, "rescue", "status", "--json").stdout)
        return document

    def fill_sets(self, node: str, names: Sequence[str], count: int, timeout: int) -> None:
        """Fill each flow set of ``names`` in ``node``'s ip table with ``count`` flows nobody
        sends (198.18.0.0/15 clients), each expiring after ``timeout`` seconds: full sets
        on a real kernel without a flood's timing (one ``nft`` transaction)."""
        flows = ", ".join(
            f"198.18.{i // 250}.{i % 250 + 1} . {10000 + i} . {ANYCAST[4]} . {PORT} "
            f"timeout {timeout}s"
            for i in range(count)
        )
        script = "".join(f"add element ip anycast_rescue {name} {{ {flows} }}\n" for name in names)
        self.lab.run(node, ["nft", "-f", "-"], input=script)

    def counter(self, node: str, *names: str) -> int:
        """Packets of named counters of ``node``'s ip table, summed: straight from nft,
        fast enough to read inside a window of a few seconds on a loaded host."""
        total = 0
        for name in names:
            out = self.lab.run(node, ["nft", "-j", "list", "counter", "ip", "anycast_rescue", name])
            objects = json.loads(out.stdout)["nftables"]
            total += sum(int(o["counter"]["packets"]) for o in objects if "counter" in o)
        return total

    def set_size(self, node: str, name: str) -> int:
        """Elements of a set of ``node``'s ip table, straight from nft."""
        out = self.lab.run(node, ["nft", "-j", "list", "set", "ip", "anycast_rescue", name])
        objects = json.loads(out.stdout)["nftables"]
        return sum(len(o["set"].get("elem", [])) for o in objects if "set" in o)

    def guard_drops(self, node: str) -> int:
        """Packets the clsact qdiscs of ``node`` dropped: the reset guard's drops."""
        out = self.lab.run(node, ["tc", "-s", "-j", "qdisc", "show"]).stdout
        return sum(int(q.get("drops", 0)) for q in json.loads(out) if q.get("kind") == "clsact")

    def counters(self) -> dict[str, dict[str, Any]]:
        """Every server's counters."""
        return {node: self.status(node)["counters"] for node in SERVERS}

    # -- traffic ---------------------------------------------------------------------------

    def hold(
        self,
        family: int,
        sessions: int,
        event: Callable[[], None],
        *,
        settle: float = 4.0,
        interval: float = 0.5,
        timeout: float = 3.0,
        tag: str = "hold",
    ) -> dict[str, Any]:
        """Hold sessions, run ``event`` once they are all open, wait ``settle`` seconds,
        and return the client's summary (``broken``, ``started_on``, ...)."""
        ready = self.workdir / f"{tag}.ready"
        ready.unlink(missing_ok=True)
        client = self.lab.popen(
            "client",
            traffic.command(
                "hold",
                _target(family),
                sessions=sessions,
                interval=interval,
                timeout=timeout,
                ready_file=ready,
            ),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            wait_until(ready.exists, timeout=30, message="the client never opened its sessions")
            time.sleep(interval * 2)  # every session has pinged at least once
            event()
            time.sleep(settle)
        finally:
            client.send_signal(signal.SIGTERM)
            out, _ = client.communicate(timeout=30)
        summary: dict[str, Any] = json.loads(out)
        return summary

    def downloads(self, family: int, count: int, size: int, timeout: float) -> dict[str, Any]:
        """Large downloads from the client; completed and hung ones per server."""
        result = self.lab.run(
            "client",
            traffic.command("downloads", _target(family), count=count, size=size, timeout=timeout),
        )
        summary: dict[str, Any] = json.loads(result.stdout)
        return summary

    def reset(self) -> None:
        """Fresh services, every server reachable and routed to, full MTU, rescue
        installed everywhere.

        The services restart because a session a control test broke leaves its socket
        established on the server it was on (the client got a reset from another one);
        the client's next sessions may reuse its port, and the old socket would swallow
        their packets.
        """
        self.stop()
        self.start_services()
        for node in SERVERS:
            self.reconnect(node)
        self.set_paths(SERVERS)
        self.run("q", "ip", "link", "set", "eth1", "mtu", "1500")
        self.install_all()
        self.flush_pmtu()

    def stop(self) -> None:
        """Stop the services."""
        for process in self.services.values():
            process.terminate()
        for process in self.services.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.services.clear()


def require_rescue_host() -> None:
    """Root, the lab tools and nft; like every lab test, fail instead of skip in CI."""
    require_lab_host()
    require_command("nft", "run `make deps` (Debian's nftables)")


@contextmanager
def rescue_lab(workdir: Path) -> Iterator[RescueLab]:
    """The lab deployed under a unique name, its services running; always destroyed."""
    require_rescue_host()
    with deployed(TOPOLOGY, wait_timeout=30) as lab:
        rescue = RescueLab(lab, workdir)
        rescue.start_services()
        try:
            yield rescue
        finally:
            rescue.stop()
