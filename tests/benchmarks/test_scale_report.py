"""The scale benchmark's pure parts: the dual-stack lab it generates, the configs it gives
the members, its report and its options. No lab: they run with the unit tests' speed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.config.load import parse_config
from tests.benchmarks import scale
from tests.benchmarks.scalelab import ScaleLab, write

SHAPE = ScaleLab(2, 4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated lab at N = 8 (2 leaves x 4)."""
    folder = tmp_path_factory.mktemp("rescue8")
    write(SHAPE, folder)
    return folder


class TestDualStackLab:
    def test_every_member_has_both_anycast_addresses_and_routes(self, folder: Path) -> None:
        """IPv6 on each member's link, fd00:255::1 on lo, a default route per family."""
        topology = (folder / "rescue8.clab.yml").read_text()
        for member in range(1, SHAPE.members + 1):
            assert f"ip addr add fd00:2:{member}::2/64 dev eth1 nodad" in topology
            assert f"ip -6 route replace default via fd00:2:{member}::1" in topology
        assert topology.count("ip addr add fd00:255::1/128 dev lo") == SHAPE.members
        # Every router forwards and hashes IPv6 over addresses, protocol and ports.
        assert topology.count("net.ipv6.conf.all.forwarding=1") == SHAPE.leaves + 1
        assert topology.count("net.ipv6.fib_multipath_hash_fields=0x0037") == SHAPE.leaves + 1

    def test_a_static_leaf_routes_and_originates_the_ipv6_prefix(self, folder: Path) -> None:
        leaf2 = (folder / "leaf2" / "frr.conf").read_text()
        for member in SHAPE.on_leaf(2):
            assert f"ipv6 route fd00:255::1/128 fd00:2:{member}::2\n" in leaf2
        ipv6 = leaf2[leaf2.index(" address-family ipv6 unicast") :]
        assert "  network fd00:255::1/128 route-map ANYCAST-ORIGINATE\n" in ipv6
        assert "  neighbor fd00:1:2::1 activate\n" in ipv6
        # The static routes come before the first 'exit', or staticd never reads them.
        assert leaf2.index("ipv6 route") < leaf2.index("exit")

    def test_sidecars_get_an_ipv6_session_that_takes_only_the_anycast_prefix(
        self, folder: Path
    ) -> None:
        leaf1 = (folder / "leaf1" / "frr.conf").read_text()
        ipv6 = leaf1[leaf1.index(" address-family ipv6 unicast") :]
        for member in SHAPE.sidecars:
            assert f" neighbor fd00:2:{member}::2 remote-as {65200 + member}\n" in leaf1
            assert f"  neighbor fd00:2:{member}::2 prefix-list ANYCAST6-IN in\n" in ipv6
            assert f"  neighbor fd00:2:{member}::2 route-map SERVERS-OUT6 out\n" in ipv6
        assert "ipv6 prefix-list ANYCAST6-IN seq 10 permit fd00:255::1/128\n" in leaf1
        spine = (folder / "spine1" / "frr.conf").read_text()
        assert "  network fd00:3::/64\n" in spine[spine.index(" address-family ipv6") :]


class TestMemberConfigs:
    def test_a_sidecar_announces_each_family_on_its_own_session(self) -> None:
        """The config the benchmark writes is valid, with a peer and a prefix per family."""
        config = parse_config(json.dumps(scale._sidecar_config(3)))
        assert [str(p.address) for p in config.bgp.peers] == ["10.2.3.1", "fd00:2:3::1"]
        assert [str(p.prefix) for p in config.prefixes] == ["10.255.0.1/32", "fd00:255::1/128"]

    def test_a_data_path_only_member_rescues_both_families_over_ipv4(self) -> None:
        config = parse_config(json.dumps(scale._static_config(SHAPE, 7)))
        assert config.rescue is not None
        assert [str(m) for m in config.rescue.members] == [f"10.2.{g}.2" for g in range(1, 9)]
        assert [str(p.prefix) for p in config.prefixes] == ["10.255.0.1/32", "fd00:255::1/128"]


def _family(family: int, broken_innocent: int) -> dict[str, Any]:
    return {
        "family": family,
        "sessions": 96,
        "on_leaf": 40,
        "on_affected": 10,
        "broken_own": 0,
        "broken_innocent": broken_innocent,
        "moved_expected_without_rescue": 20.0,
        "counters": {"rescued": 100 * family},
    }


def _event(repeat: int, broken_innocent: int) -> dict[str, Any]:
    counters = {"underlay_sent": 1200, "rescued": 1000, "forwarded_learnt": 900}
    return {
        "members": 8,
        "sidecars": 4,
        "affected": "m4",
        "leaf": 1,
        "mode": "rescue",
        "kind": "sidecar",
        "event": "withdrawal",
        "repeat": repeat,
        "window_seconds": 3.5,
        "counter_read_seconds": 0.2,
        "counters": counters | {"feedback_sent": 200, "replicated": 1, "budget_dropped": 0},
        "underlay_per_rescued": 1.2,
        "sidecars_holding_group": 4,
        "member_route_at_leaf1": False,
        "families": [_family(4, broken_innocent), _family(6, 2 * broken_innocent)],
    }


class TestReport:
    def test_an_event_has_a_line_per_family_and_its_own_cells_once(self) -> None:
        size = {
            "members": 8,
            "leaves": 2,
            "sidecars": 4,
            "data_path_only": 4,
            "timing": {
                "lab_seconds": 5,
                "data_paths_seconds": 6,
                "sidecars_announced_seconds": 7,
                "membership_learnt_seconds": 8,
            },
            "idle_sidecar": {"rss_mib_median": 50, "cpu_percent_median": 1, "cpu_percent_total": 4},
            "events": [_event(0, 0), _event(1, 3)],
        }
        lines = [
            line
            for line in scale.render({"sizes": [size]}).splitlines()
            if line.startswith("| 8 | on | m4 (sidecar, leaf1) | withdrawal | 2 |")
        ]
        assert len(lines) == 2, lines
        v4, v6 = lines
        # Per family: sessions, broken (median and worst over the runs), rescued.
        assert "| IPv4 | 96 (40) | 20 | 0 of 10 | 1.5 (worst 3) | 400 | 1.2 | 0 |" in v4, v4
        assert "| IPv6 | 96 (40) | 20 | 0 of 10 | 3 (worst 6) | 600 |" in v6, v6
        # The event's cells (ratio, drops, holding, route, window) on the first line only.
        assert "| 4 of 4 | no | 3.5 |" in v4, v4
        assert v6.endswith("| 600 | | | | | |"), v6


class TestCounters:
    def test_one_listing_is_split_into_each_familys_table(self) -> None:
        """Rescued packets per family; the underlay's counter only in the IPv4 table."""

        def counter(family: str, name: str, packets: int, table: str = "anycast_rescue") -> Any:
            return {"counter": {"family": family, "table": table, "name": name, "packets": packets}}

        listing = {
            "nftables": [
                {"metainfo": {"json_schema_version": 1}},
                counter("ip", "underlay_sent", 50),
                counter("ip", "rx_10_2_1_2", 7),
                counter("ip6", "rx_10_2_1_2", 11),
                counter("ip6", "replicated", 2),
                counter("ip", "rx_10_2_1_2", 1000, table="other"),
                counter("inet", "rx_10_2_1_2", 1000),
            ]
        }
        tables = scale._per_table(listing)
        v4, v6 = scale.Totals.of([tables[4]]), scale.Totals.of([tables[6]])
        assert (v4.underlay_sent, v4.rescued, v4.replicated) == (50, 7, 0)
        assert (v6.underlay_sent, v6.rescued, v6.replicated) == (0, 11, 2)
        assert scale._per_table({})[6] == scale._per_table({})[4]


class TestOptions:
    @pytest.mark.parametrize("value", ["5", "4,7", "x", ""])
    def test_a_bad_families_list_is_named(
        self, value: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exit_:
            scale.main(["--families", value])
        assert exit_.value.code == 2
        assert f"--families takes 4, 6 or 4,6, not {value!r}" in capsys.readouterr().err
