"""Build, use and tear down a topology on Linux network namespaces.

One namespace per node (``clab-<lab>-<node>``), veth pairs created directly in
their namespaces with the topology's interface names, ``exec`` commands run
with ``ip netns exec``, and FRR started per router with pathspace = namespace
name, so ``vtysh -N clab-<lab>-<node>`` reaches it.

Every process the lab starts is recorded (pid and kernel start time, so a
recycled pid is never killed) in ``/run/anycast-netlab/<lab>/state.json``.
:meth:`Lab.destroy` kills those, then anything else still living in the lab's
namespaces, then deletes the namespaces and directories. It derives every name
from the topology, so it works without a state file and can run any number of
times.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anycast_announcer.netlab.errors import LabError
from anycast_announcer.netlab.plan import (
    RUN_ROOT,
    BgpWait,
    PendingPeer,
    frr_run_dir,
    interface_addresses,
    lab_run_dir,
    namespace_name,
    pending_peers,
    validate_lab_name,
)
from anycast_announcer.netlab.topology import Node, Topology, default_daemons, parse_daemons
from anycast_announcer.procfs import start_ticks, stat_fields

__all__ = ["PYTHON_ENV", "Lab", "NodeStatus", "ProcessStatus"]

log = logging.getLogger(__name__)

FRR_BIN = Path("/usr/lib/frr")
NETNS_DIR = Path("/run/netns")
STATE_FILE = "state.json"
_FRR_START_TIMEOUT = 15.0
_KILL_GRACE = 3.0
_POLL = 0.2
CMD_SETTLE = 3.0
"""Seconds a node's cmd must survive before deploy returns: a server whose Python lacks a
module dies within about one (the entrypoint notices within its 1 s poll)."""
PYTHON_ENV = "ANYCAST_PYTHON"
"""The interpreter the lab's server entrypoint runs; defaults to the one running us."""
LOG_TAIL_LINES = 15


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """A process the lab started, as recorded in its state file."""

    node: str
    name: str
    pid: int
    alive: bool


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What ``inspect`` reports about one node."""

    node: str
    namespace: str
    kind: str
    image: str | None
    router: bool
    namespace_present: bool
    processes: tuple[ProcessStatus, ...]
    addresses: tuple[tuple[str, str], ...]

    @property
    def state(self) -> str:
        """``running``, ``degraded`` (a recorded process died) or ``absent``."""
        if not self.namespace_present:
            return "absent"
        if any(not proc.alive for proc in self.processes):
            return "degraded"
        return "running"

    @property
    def command(self) -> str | None:
        """The node's ``cmd``: ``running``, ``exited``, or None when none was started."""
        commands = [proc for proc in self.processes if proc.name == "cmd"]
        if not commands:
            return None
        return "running" if any(proc.alive for proc in commands) else "exited"


@dataclass(slots=True)
class _Tracked:
    node: str
    name: str
    pid: int
    start: int

    def as_json(self) -> dict[str, Any]:
        return {"node": self.node, "name": self.name, "pid": self.pid, "start": self.start}


@dataclass
class Lab:
    """A topology deployed (or to be deployed) under one lab name."""

    topology: Topology
    name: str = ""
    run_root: Path = RUN_ROOT
    _children: dict[int, subprocess.Popen[Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _commands: dict[str, subprocess.Popen[bytes]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.name = validate_lab_name(self.name or self.topology.name)
        for node in self.topology.nodes:
            namespace_name(self.name, node)  # fail early on over-long names

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None) -> Lab:
        """Load a topology file and wrap it in a lab named ``name`` (default: the topology's)."""
        return cls(Topology.load(path), name=name or "")

    # -- names ---------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        """The lab's state, config copies and logs."""
        return lab_run_dir(self.name, self.run_root)

    def ns(self, node: str) -> str:
        """The network namespace (and FRR pathspace) of ``node``."""
        self._node(node)
        return namespace_name(self.name, node)

    def namespaces(self) -> list[str]:
        """Every namespace of the lab, in topology order."""
        return [namespace_name(self.name, node) for node in self.topology.nodes]

    def is_deployed(self) -> bool:
        """True if any of the lab's namespaces exists."""
        return any(_ns_exists(ns) for ns in self.namespaces())

    # -- lifecycle -------------------------------------------------------------

    def deploy(
        self,
        *,
        start_cmds: bool = False,
        wait_timeout: float = 60.0,
        wait_bgp: BgpWait = BgpWait.ROUTERS,
    ) -> None:
        """Build the lab; on any failure remove what was made and re-raise.

        Returns once every router answers vtysh and the BGP sessions selected by
        ``wait_bgp`` are Established, or raises :class:`LabError` after
        ``wait_timeout`` seconds naming the routers and neighbors still down.
        """
        _require_root()
        self._check_bind_sources()
        present = [ns for ns in self.namespaces() if _ns_exists(ns)]
        if present:
            raise LabError(
                f"lab {self.name} is already deployed (namespace {present[0]} "
                "exists); destroy it first"
            )
        started = time.monotonic()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # FRR drops to user frr and must read the config copies below.
            self.run_dir.chmod(0o755)
            self._write_state([])
            for ns in self.namespaces():
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            for link in self.topology.links:
                ns_a, ns_b = self.ns(link.a.node), self.ns(link.b.node)
                # Created straight inside the namespaces: no temporary names in the
                # root namespace that could collide with another lab or be left behind.
                _ip(
                    "link",
                    "add",
                    "name",
                    link.a.interface,
                    "netns",
                    ns_a,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link.b.interface,
                    "netns",
                    ns_b,
                )
                _ip("-n", ns_a, "link", "set", link.a.interface, "up")
                _ip("-n", ns_b, "link", "set", link.b.interface, "up")
            for spec in self.topology.nodes.values():
                self._run_exec(spec)
            for router in self.topology.routers:
                self._start_frr(router)
            if start_cmds:
                for spec in self.topology.nodes.values():
                    self._start_cmd(spec)
            cmds_started = time.monotonic()
            deadline = cmds_started + wait_timeout
            self._wait_addresses(deadline, wait_timeout)
            self._wait_bgp(wait_bgp, deadline, wait_timeout)
            self._settle_commands(cmds_started + CMD_SETTLE)
        except BaseException:
            try:
                self.destroy()
            except Exception:  # the deploy error matters more than a cleanup one
                log.exception("cleanup after failed deploy of lab %s failed", self.name)
            raise
        log.info("lab %s deployed in %.1fs", self.name, time.monotonic() - started)

    def destroy(self) -> None:
        """Kill the lab's processes, delete its namespaces and directories; idempotent."""
        _require_root()
        tracked = self._read_state()
        _terminate([(p.pid, p.start) for p in tracked])
        namespaces = [ns for ns in self.namespaces() if _ns_exists(ns)]
        stragglers = [(pid, start_ticks(pid) or 0) for ns in namespaces for pid in _ns_pids(ns)]
        _terminate(stragglers)
        for child in self._children.values():  # reap our own children, no zombies
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=_KILL_GRACE)
        self._children.clear()
        self._commands.clear()
        for ns in namespaces:
            result = _run(["ip", "netns", "delete", ns], check=False)
            if result.returncode != 0 and _ns_exists(ns):
                raise LabError(f"cannot delete namespace {ns}: {result.stderr.strip()}")
        for ns in self.namespaces():
            shutil.rmtree(frr_run_dir(ns), ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- using a deployed lab ----------------------------------------------------

    def run(
        self,
        node: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 60.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the node's namespace and capture its output as text."""
        result = _run(
            self._netns_argv(node, argv),
            check=False,
            timeout=timeout,
            input=input,
            env=self._env(node, env),
        )
        if check and result.returncode != 0:
            raise LabError(
                f"node {node}: {' '.join(argv)} exited with {result.returncode}: "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def popen(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the node's namespace; :meth:`destroy` kills it."""
        env = kwargs.pop("env", None)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self._netns_argv(node, argv), env=self._env(node, env), **kwargs
        )
        self._children[proc.pid] = proc
        self._track(node, argv[0], proc.pid)
        return proc

    def vtysh(self, node: str, command: str, *, timeout: float = 30.0) -> str:
        """Run one vtysh command against the node's FRR and return its output."""
        ns = self.ns(node)
        result = _run(["vtysh", "-N", ns, "-c", command], check=False, timeout=timeout)
        if result.returncode != 0:
            detail = (result.stdout + result.stderr).strip().splitlines()
            raise LabError(
                f"node {node}: vtysh -c {command!r} exited with {result.returncode}: "
                f"{detail[-1] if detail else 'no output'}"
            )
        return result.stdout

    def vtysh_json(self, node: str, command: str, *, timeout: float = 30.0) -> Any:
        """Run a vtysh ``... json`` command and decode its output."""
        text = self.vtysh(node, command, timeout=timeout)
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise LabError(
                f"node {node}: vtysh -c {command!r} did not return JSON: {text[:200]!r}"
            ) from None

    def addresses(self, node: str) -> list[tuple[str, str]]:
        """(interface, address/prefix) of the node, without loopback and link-local ones."""
        result = _run(["ip", "-j", "-n", self.ns(node), "addr", "show"], check=False)
        if result.returncode != 0:
            return []
        return interface_addresses(json.loads(result.stdout or "[]"))

    def inspect(self) -> list[NodeStatus]:
        """The state of every node: namespace, recorded processes, addresses."""
        tracked = self._read_state()
        statuses = []
        for node in self.topology.nodes.values():
            ns = self.ns(node.name)
            present = _ns_exists(ns)
            procs = tuple(
                ProcessStatus(node=p.node, name=p.name, pid=p.pid, alive=_alive(p.pid, p.start))
                for p in tracked
                if p.node == node.name
            )
            statuses.append(
                NodeStatus(
                    node=node.name,
                    namespace=ns,
                    kind=node.kind,
                    image=node.image,
                    router=node.is_router,
                    namespace_present=present,
                    processes=procs,
                    addresses=tuple(self.addresses(node.name)) if present else (),
                )
            )
        return statuses

    def restart_frr(self, node: str) -> float:
        """SIGKILL the router's FRR daemons and start them again from its config.

        A crash, not a clean stop: peers see the TCP sessions die without a NOTIFICATION.
        Returns the seconds the daemons were down (until their vty sockets were back).
        """
        spec = self._node(node)
        if spec.frr_config is None:
            raise LabError(f"node {node} runs no FRR")
        daemons = {*self._daemons(spec), "zebra"}
        victims = [
            (pid, start_ticks(pid) or 0) for pid in _ns_pids(self.ns(node)) if _comm(pid) in daemons
        ]
        started = time.monotonic()
        for pid, _ in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _terminate(victims)  # waits until they are gone
        for pid, _ in victims:  # reap the ones we started ourselves
            child = self._children.pop(pid, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=_KILL_GRACE)
        self._start_frr(spec)
        return time.monotonic() - started

    # -- deploy steps ------------------------------------------------------------

    def _check_bind_sources(self) -> None:
        for node in self.topology.nodes.values():
            for bind in node.binds:
                if not bind.source.exists():
                    raise LabError(f"node {node.name}: bind source {bind.source} does not exist")

    def _run_exec(self, node: Node) -> None:
        for argv, text in zip(node.exec_argvs(), node.exec, strict=True):
            try:
                result = _run(
                    self._netns_argv(node.name, argv),
                    check=False,
                    env=self._env(node.name, None),
                    timeout=120.0,
                )
            except FileNotFoundError:
                raise LabError(f"node {node.name}: exec {text!r}: command not found") from None
            if result.returncode != 0:
                detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
                raise LabError(
                    f"node {node.name}: exec {text!r} failed with exit code "
                    f"{result.returncode}: {detail[-1] if detail else 'no output'}"
                )

    def _daemons(self, node: Node) -> tuple[str, ...]:
        daemons_file = node.frr_daemons_file
        if daemons_file is None:
            return default_daemons()
        return parse_daemons(daemons_file.read_text(encoding="utf-8"))

    def _start_frr(self, node: Node) -> None:
        assert node.frr_config is not None
        ns = self.ns(node.name)
        node_dir = self._node_dir(node.name)
        config = node_dir / "frr.conf"
        shutil.copyfile(node.frr_config, config)
        config.chmod(0o644)  # the daemons read it after dropping to user frr
        state_dir = frr_run_dir(ns)
        shutil.rmtree(state_dir, ignore_errors=True)  # stale sockets from a crashed run
        state_dir.mkdir(parents=True)
        shutil.chown(state_dir, "frr", "frr")
        for daemon in self._daemons(node):
            binary = FRR_BIN / daemon
            if not binary.exists():
                raise LabError(f"node {node.name}: FRR daemon {binary} is not installed")
            # Foreground with --log stdout: we know the exact pid and keep the log
            # in the run dir; a new session keeps it alive after the CLI exits.
            argv = [str(binary), "-N", ns, "-f", str(config), "-P", "0", "--log", "stdout"]
            proc = self._spawn(node.name, daemon, argv, node_dir / f"{daemon}.log")
            socket = state_dir / f"{daemon}.vty"
            deadline = time.monotonic() + _FRR_START_TIMEOUT
            while not socket.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = _tail(node_dir / f"{daemon}.log")
                    raise LabError(
                        f"node {node.name}: {daemon} did not start "
                        f"(exit code {proc.returncode}): {tail}"
                    )
                time.sleep(0.05)

    def _start_cmd(self, node: Node) -> None:
        argv = node.cmd_argv()
        if argv is None:
            return
        self._commands[node.name] = self._spawn(
            node.name, "cmd", argv, self._node_dir(node.name) / "cmd.log"
        )

    def _check_commands(self) -> None:
        """LabError with the log's tail if a node's cmd has exited (deploy must not pass)."""
        for node, proc in self._commands.items():
            if proc.poll() is None:
                continue
            log_path = self._node_dir(node) / "cmd.log"
            raise LabError(
                f"node {node}: cmd exited with status {proc.returncode} during deploy; "
                f"last lines of {log_path}:\n{_tail(log_path, LOG_TAIL_LINES, sep=chr(10))}"
            )

    def _settle_commands(self, until: float) -> None:
        """Give the started cmds until ``until`` to fail before calling the lab deployed."""
        while True:
            self._check_commands()
            if time.monotonic() >= until or not self._commands:
                return
            time.sleep(_POLL)

    def _spawn(
        self, node: str, name: str, argv: Sequence[str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                self._netns_argv(node, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(node, None),
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        self._track(node, name, proc.pid)
        return proc

    def _wait_addresses(self, deadline: float, timeout: float) -> None:
        # IPv6 drops packets to an address while DAD still runs on it; a lab whose
        # exec does not switch DAD off is usable only once that is over.
        while True:
            self._check_commands()
            tentative = {}
            for node in self.topology.nodes:
                result = _run(["ip", "-n", self.ns(node), "-6", "-o", "addr", "show", "tentative"])
                if result.stdout.strip():
                    tentative[node] = [line.split()[3] for line in result.stdout.splitlines()]
            if not tentative:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.name}: IPv6 addresses still tentative (DAD) after "
                    f"{timeout:g}s: {tentative}"
                )
            time.sleep(0.1)  # poll interval, bounded by the deadline above

    def _wait_bgp(self, wait: BgpWait, deadline: float, timeout: float) -> None:
        routers = [node for node in self.topology.routers if "bgpd" in self._daemons(node)]
        addresses = {
            node.name: [a.split("/")[0] for _, a in self.addresses(node.name)] for node in routers
        }
        while True:
            self._check_commands()
            pending: list[PendingPeer] = []
            for node in routers:
                others = [
                    a for name, addrs in addresses.items() if name != node.name for a in addrs
                ]
                try:
                    summary = self.vtysh_json(node.name, "show bgp summary json", timeout=10.0)
                except (LabError, subprocess.TimeoutExpired) as exc:
                    pending.append(PendingPeer(node.name, "bgpd", f"not answering: {exc}"))
                    continue
                pending.extend(pending_peers(node.name, summary, wait, others))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {self.name}: BGP not up after {timeout:g}s: "
                    + "; ".join(str(p) for p in pending)
                )
            time.sleep(0.5)  # poll interval, bounded by the deadline above

    # -- helpers -----------------------------------------------------------------

    def _node(self, node: str) -> Node:
        try:
            return self.topology.nodes[node]
        except KeyError:
            raise LabError(
                f"lab {self.name} has no node {node!r} (nodes: {', '.join(self.topology.nodes)})"
            ) from None

    def _node_dir(self, node: str) -> Path:
        path = self.run_dir / node
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        return path

    def _netns_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def _env(self, node: str, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        # The servers' entrypoint runs ANYCAST_PYTHON: by default the interpreter running
        # us (the project's venv), not whatever `python3` is on PATH, which lacks our
        # dependencies and made every server die at once.
        env.setdefault(PYTHON_ENV, sys.executable)
        env.update(self._node(node).env)
        if extra is not None:
            env.update(extra)
        return env

    @contextlib.contextmanager
    def _locked_state(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "state.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read_state(self) -> list[_Tracked]:
        path = self.run_dir / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [
                _Tracked(
                    node=str(p["node"]),
                    name=str(p["name"]),
                    pid=int(p["pid"]),
                    start=int(p["start"]),
                )
                for p in data["processes"]
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # no or damaged state: destroy still works from the namespaces

    def _write_state(self, tracked: list[_Tracked]) -> None:
        path = self.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        data = {
            "lab": self.name,
            "topology": str(self.topology.path),
            "processes": [p.as_json() for p in tracked],
        }
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def _track(self, node: str, name: str, pid: int) -> None:
        with self._locked_state():
            tracked = self._read_state()
            tracked.append(_Tracked(node=node, name=name, pid=pid, start=start_ticks(pid) or 0))
            self._write_state(tracked)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("anycast-netlab needs root to manage network namespaces and FRR")


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 60.0,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=env,
        check=False,
    )
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def _ip(*args: str) -> None:
    _run(["ip", *args])


def _ns_exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def _ns_pids(ns: str) -> list[int]:
    result = _run(["ip", "netns", "pids", ns], check=False)
    return [int(pid) for pid in result.stdout.split() if pid.isdigit()]


def _alive(pid: int, start: int) -> bool:
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start == 0 or int(fields[19]) == start


def _terminate(processes: list[tuple[int, int]]) -> None:
    """SIGTERM, then SIGKILL whatever is still alive after a grace period."""
    living = [(pid, start) for pid, start in processes if _alive(pid, start)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in living:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + _KILL_GRACE
        while living and time.monotonic() < deadline:
            living = [(pid, start) for pid, start in living if _alive(pid, start)]
            if living:
                time.sleep(_POLL)
        if not living:
            return
    log.warning("processes still alive after SIGKILL: %s", [pid for pid, _ in living])


def _tail(path: Path, lines: int = 3, sep: str = " | ") -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return sep.join(text[-lines:]) or "empty log"


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
