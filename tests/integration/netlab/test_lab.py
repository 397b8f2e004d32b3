"""The lab runner on real namespaces and FRR: deploy, use, destroy, clean up after failure."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from anycast_announcer.netlab import BgpWait, Lab, LabError, Topology
from anycast_announcer.netlab.cli import main
from anycast_announcer.netlab.plan import FRR_RUN_ROOT
from tests.lablib import SINGLE_LEAF, deployed, require_lab_host, unique_lab_name, wait_until

pytestmark = pytest.mark.integration

NETNS_DIR = Path("/run/netns")


@pytest.fixture(autouse=True)
def _lab_host() -> None:
    require_lab_host()


@pytest.fixture(scope="module")
def single_leaf() -> Iterator[Lab]:
    """One single-leaf lab shared by the read-only tests of this module."""
    if os.geteuid() != 0:
        pytest.skip("lab tests need root")
    with deployed(SINGLE_LEAF) as lab:
        yield lab


def assert_gone(lab: Lab, pids: list[int] = []) -> None:  # noqa: B006 - never mutated
    """Nothing of the lab is left: namespaces, FRR state dirs, run dir, processes."""
    for ns in lab.namespaces():
        assert not (NETNS_DIR / ns).exists(), f"namespace {ns} left behind"
        assert not (FRR_RUN_ROOT / ns).exists(), f"{FRR_RUN_ROOT / ns} left behind"
    assert not lab.run_dir.exists(), f"{lab.run_dir} left behind"
    for pid in pids:
        assert not _running(pid), f"process {pid} survived destroy"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _frr_pids(lab: Lab, node: str) -> dict[str, int]:
    return {p.name: p.pid for s in lab.inspect() if s.node == node for p in s.processes}


def _tcp_connect_argv(host: str, port: int) -> list[str]:
    # No ping needed: bgpd listens on 179, so a TCP connect proves the path both ways.
    code = f"import socket; socket.create_connection(({host!r}, {port}), timeout=2).close()"
    return [sys.executable, "-c", code]


class TestDeployedSingleLeaf:
    def test_every_node_has_its_namespace(self, single_leaf: Lab) -> None:
        """One namespace per node, named clab-<lab>-<node>."""
        for node in ("leaf1", "srv1", "srv2", "client"):
            assert (NETNS_DIR / f"clab-{single_leaf.name}-{node}").exists()

    def test_addresses_are_configured_by_exec(self, single_leaf: Lab) -> None:
        """exec commands ran in order: link and anycast addresses are in place."""
        assert set(single_leaf.addresses("leaf1")) == {
            ("eth1", "10.0.1.1/24"),
            ("eth1", "fd00:1::1/64"),
            ("eth2", "10.0.2.1/24"),
            ("eth2", "fd00:2::1/64"),
            ("eth3", "10.0.9.1/24"),
            ("eth3", "fd00:9::1/64"),
        }
        assert set(single_leaf.addresses("srv2")) == {
            ("eth1", "10.0.2.2/24"),
            ("eth1", "fd00:2::2/64"),
            ("lo", "10.255.0.1/32"),
            ("lo", "fd00:255::1/128"),
        }
        route = single_leaf.run("client", ["ip", "route", "show", "default"]).stdout
        assert "via 10.0.9.1 dev eth1" in route

    def test_router_sysctls_are_set_in_its_namespace(self, single_leaf: Lab) -> None:
        """Forwarding and the per-router multipath hash apply inside leaf1's namespace."""
        out = single_leaf.run(
            "leaf1",
            [
                "sysctl",
                "-n",
                "net.ipv4.ip_forward",
                "net.ipv4.fib_multipath_hash_policy",
                "net.ipv4.fib_multipath_hash_fields",
            ],
        ).stdout.split()
        assert out == ["1", "3", "55"]  # 0x0037, read back in decimal

    def test_frr_runs_and_answers_vtysh(self, single_leaf: Lab) -> None:
        """zebra and bgpd are alive and bgpd has leaf1's config."""
        pids = _frr_pids(single_leaf, "leaf1")
        assert set(pids) == {"zebra", "bgpd"}
        assert all(_running(pid) for pid in pids.values())
        summary = single_leaf.vtysh_json("leaf1", "show bgp summary json")
        assert summary["ipv4Unicast"]["as"] == 65100
        assert summary["ipv4Unicast"]["routerId"] == "10.0.9.1"
        assert set(summary["ipv4Unicast"]["peers"]) == {"10.0.1.2", "10.0.2.2"}
        assert set(summary["ipv6Unicast"]["peers"]) == {"fd00:1::2", "fd00:2::2"}
        text = single_leaf.vtysh("leaf1", "show running-config")
        assert "bgp bestpath bandwidth skip-missing" in text

    def test_vtysh_cli_reaches_the_pathspace(self, single_leaf: Lab) -> None:
        """`vtysh -N <namespace>` works for people too, not only through the API."""
        out = subprocess.run(
            ["vtysh", "-N", single_leaf.ns("leaf1"), "-c", "show bgp summary"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert "local AS number 65100" in out

    def test_client_reaches_the_leaf(self, single_leaf: Lab) -> None:
        """The client's link and default route work (TCP to leaf1's BGP port, v4 and v6)."""
        single_leaf.run("client", _tcp_connect_argv("10.0.9.1", 179))
        single_leaf.run("client", _tcp_connect_argv("fd00:9::1", 179))
        single_leaf.run("srv1", _tcp_connect_argv("10.0.1.1", 179))

    def test_exec_cli_passes_exit_codes_through(self, single_leaf: Lab) -> None:
        """`anycast-netlab exec` returns the command's own exit status."""
        base = ["exec", "-t", str(SINGLE_LEAF), "--name", single_leaf.name, "--node", "srv1"]
        assert main([*base, "--", "sh", "-c", "exit 7"]) == 7
        assert main([*base, "--", "ip", "addr", "show", "dev", "lo"]) == 0

    def test_exec_runs_inside_the_namespace(self, single_leaf: Lab) -> None:
        """Commands see the node's interfaces, not the host's."""
        links = json.loads(single_leaf.run("client", ["ip", "-j", "link"]).stdout)
        assert sorted(link["ifname"] for link in links) == ["eth1", "lo"]

    def test_inspect_json_lists_nodes_and_state(
        self, single_leaf: Lab, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """inspect reports every node as running, with leaf1's FRR processes."""
        assert (
            main(
                ["inspect", "-t", str(SINGLE_LEAF), "--name", single_leaf.name, "--format", "json"]
            )
            == 0
        )
        nodes = {n["node"]: n for n in json.loads(capsys.readouterr().out)}
        assert set(nodes) == {"leaf1", "srv1", "srv2", "client"}
        assert {n["state"] for n in nodes.values()} == {"running"}
        assert {p["name"] for p in nodes["leaf1"]["processes"]} == {"zebra", "bgpd"}

    def test_deploying_twice_is_refused(self, single_leaf: Lab) -> None:
        """A second deploy of a live lab fails without touching it."""
        with pytest.raises(LabError, match="already deployed"):
            Lab(single_leaf.topology, name=single_leaf.name).deploy()
        assert single_leaf.vtysh_json("leaf1", "show bgp summary json")


class TestDestroy:
    def test_destroy_removes_everything_and_can_run_twice(self) -> None:
        """Namespaces, FRR dirs, run dir and every process (tracked or not) are gone."""
        lab = Lab(Topology.load(SINGLE_LEAF), name=unique_lab_name())
        try:
            lab.deploy()
            pids = list(_frr_pids(lab, "leaf1").values())
            tracked = lab.popen("srv1", ["sleep", "300"])
            # Started behind netlab's back: found through `ip netns pids`.
            untracked = subprocess.Popen(
                ["ip", "netns", "exec", lab.ns("srv2"), "sleep", "300"], start_new_session=True
            )
            wait_until(lambda: _running(untracked.pid), 5, "untracked sleep did not start")
            lab.destroy()
            untracked.wait(timeout=5)
            assert_gone(lab, [*pids, tracked.pid, untracked.pid])
            lab.destroy()
            assert_gone(lab)
        finally:
            lab.destroy()

    def test_destroy_after_a_crash_without_state_file(self) -> None:
        """Killed daemons and a lost state file do not stop destroy."""
        lab = Lab(Topology.load(SINGLE_LEAF), name=unique_lab_name())
        try:
            lab.deploy()
            pids = _frr_pids(lab, "leaf1")
            os.kill(pids["zebra"], signal.SIGKILL)
            wait_until(lambda: not _running(pids["zebra"]), 5, "zebra survived SIGKILL")
            assert {s.node: s.state for s in lab.inspect()}["leaf1"] == "degraded"
            (lab.run_dir / "state.json").unlink()
            assert main(["destroy", "-t", str(SINGLE_LEAF), "--name", lab.name]) == 0
            assert_gone(lab, list(pids.values()))
        finally:
            lab.destroy()

    def test_destroy_of_a_lab_never_deployed(self) -> None:
        """destroy is safe when nothing exists."""
        lab = Lab(Topology.load(SINGLE_LEAF), name=unique_lab_name())
        lab.destroy()
        assert_gone(lab)


def _write_topology(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "lab.clab.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _two_routers(tmp_path: Path, r2_remote_as: int) -> Path:
    """r1 (AS 65001) and r2 (AS 65002) on one link; r2 expects r1 to be `r2_remote_as`."""
    for name, (me, peer, peer_as) in {"r1": (1, 2, 65002), "r2": (2, 1, r2_remote_as)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "frr.conf").write_text(
            f"hostname {name}\nrouter bgp 6500{me}\n bgp router-id 10.0.0.{me}\n"
            f" no bgp ebgp-requires-policy\n timers bgp 1 3\n"
            f" neighbor 10.0.0.{peer} remote-as {peer_as}\n"
            f" neighbor 10.0.0.{peer} timers connect 1\n"
            # A server that never comes: must not block the default wait.
            f" neighbor 10.0.0.9 remote-as 65009\nexit\n"
        )
        (tmp_path / name / "daemons").write_text("bgpd=yes\n")
    return _write_topology(
        tmp_path,
        {
            "name": "two",
            "topology": {
                "defaults": {"kind": "linux"},
                "nodes": {
                    name: {
                        "binds": [
                            f"{name}/frr.conf:/etc/frr/frr.conf",
                            f"{name}/daemons:/etc/frr/daemons",
                        ],
                        "exec": [f"ip addr add 10.0.0.{i}/24 dev eth1"],
                    }
                    for i, name in ((1, "r1"), (2, "r2"))
                },
                "links": [{"endpoints": ["r1:eth1", "r2:eth1"]}],
            },
        },
    )


class TestDeployWait:
    def test_waits_for_router_sessions_only(self, tmp_path: Path) -> None:
        """deploy returns with r1-r2 Established although the absent server peer is down."""
        with deployed(_two_routers(tmp_path, 65001)) as lab:
            peers = lab.vtysh_json("r1", "show bgp summary json")["ipv4Unicast"]["peers"]
            assert peers["10.0.0.2"]["state"] == "Established"
            assert peers["10.0.0.9"]["state"] != "Established"

    def test_names_the_router_and_neighbor_that_did_not_come_up(self, tmp_path: Path) -> None:
        """A session that cannot establish fails deploy by name and leaves nothing."""
        lab = Lab(Topology.load(_two_routers(tmp_path, 65099)), name=unique_lab_name())
        try:
            with pytest.raises(LabError, match=r"r1 -> 10\.0\.0\.2") as info:
                lab.deploy(wait_timeout=3)
            assert "r2 -> 10.0.0.1" in str(info.value)
            assert_gone(lab)
        finally:
            lab.destroy()

    def test_wait_all_includes_server_peers(self, tmp_path: Path) -> None:
        """BgpWait.ALL also waits for the peer nobody runs, and so times out."""
        lab = Lab(Topology.load(_two_routers(tmp_path, 65001)), name=unique_lab_name())
        try:
            with pytest.raises(LabError, match=r"10\.0\.0\.9"):
                lab.deploy(wait_timeout=2, wait_bgp=BgpWait.ALL)
            assert_gone(lab)
        finally:
            lab.destroy()


class TestDeployFailures:
    def test_failing_exec_names_node_and_command_and_cleans_up(self, tmp_path: Path) -> None:
        """The first failing exec stops deploy; its node and command are in the message."""
        path = _write_topology(
            tmp_path,
            {
                "name": "x",
                "topology": {
                    "nodes": {
                        "a": {
                            "kind": "linux",
                            "exec": ["ip link set lo up", "ip addr add 10.1.1.1/24 dev nope"],
                        },
                        "b": {"kind": "linux"},
                    },
                    "links": [{"endpoints": ["a:eth1", "b:eth1"]}],
                },
            },
        )
        lab = Lab(Topology.load(path), name=unique_lab_name())
        try:
            expected = re.escape("node a: exec 'ip addr add 10.1.1.1/24 dev nope' failed")
            with pytest.raises(LabError, match=expected):
                lab.deploy()
            assert_gone(lab)
        finally:
            lab.destroy()

    def test_missing_bind_source_fails_before_building(self, tmp_path: Path) -> None:
        """A bind to a file that does not exist is reported and nothing is created."""
        path = _write_topology(
            tmp_path,
            {
                "name": "x",
                "topology": {
                    "nodes": {"r": {"kind": "linux", "binds": ["r/frr.conf:/etc/frr/frr.conf"]}}
                },
            },
        )
        lab = Lab(Topology.load(path), name=unique_lab_name())
        try:
            with pytest.raises(LabError, match=r"node r: bind source .*frr\.conf does not exist"):
                lab.deploy()
            assert_gone(lab)
        finally:
            lab.destroy()

    def test_cmd_is_started_with_bind_paths_rewritten(self, tmp_path: Path) -> None:
        """With start_cmds the node's cmd runs in its namespace and sees the host file."""
        (tmp_path / "data.txt").write_text("hello\n")
        path = _write_topology(
            tmp_path,
            {
                "name": "x",
                "topology": {
                    "nodes": {
                        "a": {
                            "kind": "linux",
                            "binds": ["data.txt:/srv/data.txt"],
                            "cmd": "tail -f /srv/data.txt",
                        }
                    }
                },
            },
        )
        lab = Lab(Topology.load(path), name=unique_lab_name())
        try:
            lab.deploy(start_cmds=True)
            procs = {p.name: p for s in lab.inspect() for p in s.processes}
            assert procs["cmd"].alive
            cmdline = Path(f"/proc/{procs['cmd'].pid}/cmdline").read_bytes().split(b"\0")
            assert str(tmp_path / "data.txt").encode() in cmdline
            netns = os.readlink(f"/proc/{procs['cmd'].pid}/ns/net")
            assert netns != os.readlink("/proc/self/ns/net")
            lab.destroy()
            assert_gone(lab, [procs["cmd"].pid])
        finally:
            lab.destroy()
