"""The per-peer ``bfd:`` setting: shorthand, FRR's defaults, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from anycast_announcer.config import BfdConfig, ConfigError, PeerConfig
from anycast_announcer.config.load import parse_config


def peer(bfd: Any) -> PeerConfig:
    return PeerConfig.model_validate({"address": "10.0.1.1", "peer_as": 65100, "bfd": bfd})


class TestBfdSetting:
    def test_true_means_frr_defaults(self) -> None:
        assert peer(True).bfd == BfdConfig(min_tx=0.3, min_rx=0.3, multiplier=3)

    def test_false_and_absent_mean_no_bfd(self) -> None:
        assert peer(False).bfd is None
        assert PeerConfig.model_validate({"address": "10.0.1.1", "peer_as": 65100}).bfd is None

    def test_a_mapping_sets_intervals_in_seconds(self) -> None:
        assert peer({"min_tx": 0.05, "multiplier": 5}).bfd == BfdConfig(
            min_tx=0.05, min_rx=0.3, multiplier=5
        )

    @pytest.mark.parametrize(
        ("bfd", "problem"),
        [
            ({"min_tx": 0.001}, "bfd.min_tx"),
            ({"min_rx": 61}, "bfd.min_rx"),
            ({"multiplier": 1}, "bfd.multiplier"),
            ({"interval": 0.3}, "bfd.interval: unknown key"),
            ("yes", "bfd"),
            (0.3, "bfd"),
        ],
    )
    def test_check_config_names_what_is_wrong(self, bfd: Any, problem: str) -> None:
        text = (
            "bgp:\n  local_as: 65001\n  router_id: 10.0.0.1\n  peers:\n"
            f"    - {{address: 10.0.1.1, peer_as: 65100, bfd: {bfd!r}}}\n"
        )
        with pytest.raises(ConfigError) as caught:
            parse_config(text.replace("'", '"'), "c.yaml")
        assert f"bgp.peers[0].{problem}" in caught.value.render()
