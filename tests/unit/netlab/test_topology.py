"""Parsing containerlab files, merging defaults and kinds, and the pure lab planning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anycast_announcer.netlab import BgpWait, Endpoint, Lab, LabError, Topology, TopologyError
from anycast_announcer.netlab.cli import main
from anycast_announcer.netlab.plan import (
    bgp_peers,
    interface_addresses,
    namespace_name,
    pending_peers,
    validate_lab_name,
)
from anycast_announcer.netlab.topology import parse_daemons
from tests.lablib import SINGLE_LEAF

BASE = Path("/labs/demo/demo.clab.yml")


def parse(topology: dict[str, Any], path: Path = BASE) -> Topology:
    return Topology.parse({"name": "demo", "topology": topology}, path=path)


def two_nodes(**extra: Any) -> dict[str, Any]:
    return {"nodes": {"a": {"kind": "linux"}, "b": {"kind": "linux"}}, **extra}


class TestSingleLeaf:
    def test_parses_nodes_links_and_router(self) -> None:
        """The shipped single-leaf lab has one FRR router and three links from it."""
        topo = Topology.load(SINGLE_LEAF)
        assert topo.name == "single-leaf"
        assert list(topo.nodes) == ["leaf1", "srv1", "srv2", "client"]
        assert [n.name for n in topo.routers] == ["leaf1"]
        leaf = topo.nodes["leaf1"]
        assert leaf.frr_config == SINGLE_LEAF.parent / "leaf1" / "frr.conf"
        assert leaf.frr_daemons_file == SINGLE_LEAF.parent / "leaf1" / "daemons"
        assert [(link.a, link.b) for link in topo.links] == [
            (Endpoint("leaf1", "eth1"), Endpoint("srv1", "eth1")),
            (Endpoint("leaf1", "eth2"), Endpoint("srv2", "eth1")),
            (Endpoint("leaf1", "eth3"), Endpoint("client", "eth1")),
        ]
        assert topo.nodes["srv1"].kind == "linux"  # from topology.defaults

    def test_leaf_daemons_file_enables_bgpd_only(self) -> None:
        """leaf1 runs zebra and bgpd, nothing else."""
        daemons = (SINGLE_LEAF.parent / "leaf1" / "daemons").read_text()
        assert parse_daemons(daemons) == ("zebra", "bgpd")

    def test_servers_own_the_anycast_address(self) -> None:
        """Both servers put the anycast /32 and /128 on lo."""
        topo = Topology.load(SINGLE_LEAF)
        for server in ("srv1", "srv2"):
            assert "ip addr add 10.255.0.1/32 dev lo" in topo.nodes[server].exec
            assert "ip addr add fd00:255::1/128 dev lo" in topo.nodes[server].exec


class TestMerge:
    def test_exec_takes_first_non_empty_of_node_kind_defaults(self) -> None:
        """exec lists are not concatenated: node beats kind beats defaults."""
        topo = parse(
            {
                "defaults": {"kind": "linux", "exec": ["echo defaults"]},
                "kinds": {"linux": {"exec": ["echo kind"]}},
                "nodes": {"own": {"exec": ["echo node"]}, "inherits": {}},
            }
        )
        assert topo.nodes["own"].exec == ("echo node",)
        assert topo.nodes["inherits"].exec == ("echo kind",)

    def test_exec_falls_back_to_defaults(self) -> None:
        """Without node or kind exec, the defaults' exec applies."""
        topo = parse({"defaults": {"kind": "linux", "exec": ["echo d"]}, "nodes": {"n": None}})
        assert topo.nodes["n"].exec == ("echo d",)

    def test_binds_merge_by_container_path(self) -> None:
        """A later layer replaces the bind for the same container path and keeps the others."""
        topo = parse(
            {
                "defaults": {"kind": "linux", "binds": ["/d/a:/etc/a", "/d/b:/etc/b"]},
                "kinds": {"linux": {"binds": ["/k/b:/etc/b", "/k/c:/etc/c:ro"]}},
                "nodes": {"n": {"binds": ["n/c:/etc/c"]}},
            }
        )
        binds = {b.target: (str(b.source), b.mode) for b in topo.nodes["n"].binds}
        assert binds == {
            "/etc/a": ("/d/a", None),
            "/etc/b": ("/k/b", None),
            "/etc/c": ("/labs/demo/n/c", None),
        }

    def test_env_and_labels_merge_with_node_winning(self) -> None:
        """env is a dictionary merge; YAML booleans become the text a shell would see."""
        topo = parse(
            {
                "defaults": {"kind": "linux", "env": {"A": "1", "B": "d"}},
                "kinds": {"linux": {"env": {"B": "k", "C": True}, "labels": {"x": "k"}}},
                "nodes": {"n": {"env": {"A": 2}, "labels": {"y": "n"}}},
            }
        )
        node = topo.nodes["n"]
        assert dict(node.env) == {"A": "2", "B": "k", "C": "true"}
        assert dict(node.labels) == {"x": "k", "y": "n"}

    def test_scalars_prefer_node_then_kind_then_defaults(self) -> None:
        """image and cmd come from the most specific layer that sets them."""
        topo = parse(
            {
                "defaults": {"kind": "linux", "image": "d:1", "cmd": "sleep 1"},
                "kinds": {"linux": {"image": "k:1"}},
                "nodes": {"n": {"cmd": "sleep 2"}, "m": {}},
            }
        )
        assert (topo.nodes["n"].image, topo.nodes["n"].cmd) == ("k:1", "sleep 2")
        assert (topo.nodes["m"].image, topo.nodes["m"].cmd) == ("k:1", "sleep 1")

    def test_node_without_kind_is_an_error(self) -> None:
        """A node must get its kind from itself or the defaults."""
        with pytest.raises(TopologyError, match="node n: no kind"):
            parse({"nodes": {"n": {}}})

    def test_unsupported_kind_is_an_error(self) -> None:
        """Kinds that need a vendor container cannot run on plain namespaces."""
        with pytest.raises(TopologyError, match="kind 'nokia_srlinux' is not supported"):
            parse({"nodes": {"n": {"kind": "nokia_srlinux"}}})


class TestLinks:
    def test_unknown_node_is_named(self) -> None:
        """A link to a node that does not exist names the endpoint and the node."""
        with pytest.raises(TopologyError, match="link 1: endpoint 'x:eth1' names unknown node 'x'"):
            parse(two_nodes(links=[{"endpoints": ["x:eth1", "b:eth1"]}]))

    def test_duplicate_interface_is_an_error(self) -> None:
        """One interface cannot be the end of two links."""
        links = [{"endpoints": ["a:eth1", "b:eth1"]}, {"endpoints": ["a:eth1", "b:eth2"]}]
        with pytest.raises(TopologyError, match="link 2: interface a:eth1 is used by more"):
            parse(two_nodes(links=links))

    @pytest.mark.parametrize("endpoint", ["a", "a:eth1:x", "a:", "a:lo", "a:" + "e" * 16, 7])
    def test_malformed_endpoint_is_an_error(self, endpoint: object) -> None:
        """Endpoints must be node:interface with a valid Linux interface name."""
        with pytest.raises(TopologyError, match="link 1"):
            parse(two_nodes(links=[{"endpoints": [endpoint, "b:eth1"]}]))

    def test_fifteen_character_interface_is_accepted(self) -> None:
        """IFNAMSIZ allows 15 characters."""
        topo = parse(two_nodes(links=[{"endpoints": ["a:" + "e" * 15, "b:eth1"]}]))
        assert topo.links[0].a.interface == "e" * 15

    def test_extended_endpoint_form_is_accepted(self) -> None:
        """containerlab's {node, interface} endpoint form parses like the short one."""
        links = [{"endpoints": [{"node": "a", "interface": "eth1"}, "b:eth1"]}]
        assert parse(two_nodes(links=links)).links[0].a == Endpoint("a", "eth1")

    def test_needs_exactly_two_endpoints(self) -> None:
        """A veth has two ends."""
        with pytest.raises(TopologyError, match="two"):
            parse(two_nodes(links=[{"endpoints": ["a:eth1"]}]))


class TestLoad:
    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a TopologyError naming it."""
        with pytest.raises(TopologyError, match=r"cannot read topology .*nope\.yml"):
            Topology.load(tmp_path / "nope.yml")

    def test_bad_yaml(self, tmp_path: Path) -> None:
        """Broken YAML is a one-line TopologyError."""
        path = tmp_path / "bad.clab.yml"
        path.write_text("name: x\ntopology: [\n")
        with pytest.raises(TopologyError, match="not valid YAML") as info:
            Topology.load(path)
        assert "\n" not in str(info.value)

    @pytest.mark.parametrize(
        "doc",
        [
            [],
            {"topology": {}},
            {"name": "a b", "topology": {}},
            {"name": "x"},
            {"name": "x", "topology": {"nodes": {}}},
        ],
    )
    def test_structure_errors(self, doc: object) -> None:
        """Documents without a usable name or nodes are rejected."""
        with pytest.raises(TopologyError):
            Topology.parse(doc, path=BASE)

    def test_relative_binds_are_relative_to_the_file(self, tmp_path: Path) -> None:
        """Bind sources resolve against the topology's directory, not the working directory."""
        path = tmp_path / "lab" / "x.clab.yml"
        path.parent.mkdir()
        path.write_text(
            yaml.safe_dump(
                {
                    "name": "x",
                    "topology": {
                        "nodes": {
                            "r": {"kind": "linux", "binds": ["r/../r/frr.conf:/etc/frr/frr.conf"]}
                        }
                    },
                }
            )
        )
        assert Topology.load(path).nodes["r"].frr_config == tmp_path / "lab" / "r" / "frr.conf"


class TestRewrite:
    def node(self) -> Any:
        return parse(
            {
                "nodes": {
                    "n": {
                        "kind": "linux",
                        "binds": [
                            "/host/cfg.yaml:/etc/app/config.yaml",
                            "/host/etc:/etc/app",
                            "/host/data:/data:ro",
                        ],
                        "cmd": "app --config /etc/app/config.yaml --log=/data/x.log "
                        "/etc/app/y /etc/other",
                        "exec": ["cat /etc/app/config.yaml"],
                    }
                }
            }
        ).nodes["n"]

    def test_cmd_paths_map_to_host_sources(self) -> None:
        """Container paths in cmd arguments become host paths; other paths stay."""
        assert self.node().cmd_argv() == [
            "app",
            "--config",
            "/host/cfg.yaml",
            "--log=/host/data/x.log",
            "/host/etc/y",
            "/etc/other",
        ]

    def test_exec_paths_map_too(self) -> None:
        """exec commands get the same rewrite."""
        assert self.node().exec_argvs() == [["cat", "/host/cfg.yaml"]]

    def test_longest_container_path_wins(self) -> None:
        """A file bind inside a bound directory takes precedence over the directory."""
        node = self.node()
        assert node.host_path("/etc/app/config.yaml") == Path("/host/cfg.yaml")
        assert node.host_path("/etc/app/other.yaml") == Path("/host/etc/other.yaml")
        assert node.host_path("/etc/application") is None

    def test_unbalanced_quotes_fail_at_load(self) -> None:
        """A command that cannot be split is reported when the file is read."""
        with pytest.raises(TopologyError, match="node n: cannot split exec"):
            parse({"nodes": {"n": {"kind": "linux", "exec": ["echo 'oops"]}}})


class TestNames:
    def test_namespace_follows_containerlab_container_names(self) -> None:
        """clab-<lab>-<node>, with the lab name overridable per run."""
        topo = Topology.load(SINGLE_LEAF)
        assert Lab(topo).ns("leaf1") == "clab-single-leaf-leaf1"
        assert Lab(topo, name="t1a2b3").ns("client") == "clab-t1a2b3-client"
        assert namespace_name("x", "y") == "clab-x-y"

    @pytest.mark.parametrize("name", ["-x", "a b", "a/b", "x" * 200])
    def test_bad_lab_names_are_rejected(self, name: str) -> None:
        """Lab names must be safe in paths and short enough for FRR's socket paths."""
        with pytest.raises(TopologyError):
            Lab(Topology.load(SINGLE_LEAF), name=name)

    def test_validate_lab_name_accepts_generated_names(self) -> None:
        """The names tests generate are valid."""
        assert validate_lab_name("t0a1b2c") == "t0a1b2c"

    def test_unknown_node_in_api(self) -> None:
        """Asking for a node that is not in the topology names the known ones."""
        with pytest.raises(LabError, match="no node 'nope'"):
            Lab(Topology.load(SINGLE_LEAF)).ns("nope")


class TestDaemons:
    def test_parse_daemons(self) -> None:
        """Only `name=yes` lines of known daemons count; zebra always comes first."""
        text = (
            '# bgpd=yes\nbgpd=yes\nospfd=no\nstaticd="yes"\nzebra=no\nfoo=yes\nvtysh_enable=yes\n'
        )
        assert parse_daemons(text) == ("zebra", "bgpd", "staticd")


SUMMARY = {
    "ipv4Unicast": {
        "peers": {
            "10.0.1.2": {"state": "Active"},
            "10.0.0.2": {"state": "Established"},
            "10.0.0.6": {"state": "Connect"},
        }
    },
    "ipv6Unicast": {
        "peers": {
            "fd00:0:0::2": {"state": "Established"},
            "10.0.0.2": {"state": "OpenSent"},
        }
    },
}


class TestBgpWait:
    def test_peer_down_in_any_family_counts_as_down(self) -> None:
        """A neighbor is up only if every family says Established."""
        assert bgp_peers(SUMMARY)["10.0.0.2"] == "OpenSent"

    def test_routers_mode_waits_only_for_other_routers(self) -> None:
        """Servers that are not started yet (10.0.1.2) do not block a deploy."""
        pending = pending_peers("r1", SUMMARY, BgpWait.ROUTERS, ["10.0.0.2", "10.0.0.6"])
        assert [(p.peer, p.state) for p in pending] == [
            ("10.0.0.2", "OpenSent"),
            ("10.0.0.6", "Connect"),
        ]
        assert str(pending[0]) == "r1 -> 10.0.0.2 (OpenSent)"

    def test_addresses_compare_canonically(self) -> None:
        """fd00:0:0::2 and fd00::2 are the same neighbor."""
        summary = {"ipv6Unicast": {"peers": {"fd00:0:0::2": {"state": "Idle"}}}}
        assert pending_peers("r", summary, BgpWait.ROUTERS, ["fd00::2"])

    def test_all_and_none_modes(self) -> None:
        """ALL waits for every neighbor, NONE for none."""
        assert len(pending_peers("r1", SUMMARY, BgpWait.ALL, [])) == 3
        assert pending_peers("r1", SUMMARY, BgpWait.NONE, ["10.0.0.2"]) == []

    def test_empty_or_odd_summaries_have_no_peers(self) -> None:
        """bgpd without `router bgp` answers {}; that is nothing to wait for."""
        assert bgp_peers({}) == {}
        assert bgp_peers([]) == {}
        assert bgp_peers({"ipv4Unicast": {"peers": []}}) == {}


def test_interface_addresses_skip_loopback_and_link_local() -> None:
    """inspect and the BGP wait see a node's real addresses only."""
    ip_json = [
        {
            "ifname": "lo",
            "addr_info": [
                {"local": "127.0.0.1", "prefixlen": 8},
                {"local": "::1", "prefixlen": 128},
                {"local": "10.255.0.1", "prefixlen": 32},
            ],
        },
        {
            "ifname": "eth1",
            "addr_info": [
                {"local": "fe80::1", "prefixlen": 64},
                {"local": "fd00:1::2", "prefixlen": 64},
            ],
        },
    ]
    assert interface_addresses(ip_json) == [("lo", "10.255.0.1/32"), ("eth1", "fd00:1::2/64")]


class TestCliErrors:
    @pytest.mark.parametrize(
        "content",
        [
            None,
            "name: x\ntopology: [\n",
            "name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n"
            "  links:\n    - endpoints: [a:eth1, b:eth1]\n",
        ],
    )
    def test_errors_are_one_line_and_exit_2(
        self, tmp_path: Path, content: str | None, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Missing files, bad YAML and bad links never produce a traceback."""
        path = tmp_path / "x.clab.yml"
        if content is not None:
            path.write_text(content)
        assert main(["inspect", "-t", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("anycast-netlab: error: ")
        assert err.count("\n") == 1
