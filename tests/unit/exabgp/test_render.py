"""ExaBGP configuration rendering."""

from __future__ import annotations

from anycast_announcer.config import BgpConfig
from anycast_announcer.exabgp.render import render_config, render_environment


def test_renders_one_neighbor_per_peer_with_its_family() -> None:
    bgp = BgpConfig.model_validate(
        {
            "local_as": 65001,
            "router_id": "10.0.1.2",
            "hold_time": 3,
            "peers": [
                {
                    "address": "10.0.1.1",
                    "peer_as": 65100,
                    "local_address": "10.0.1.2",
                    "md5_password": "s3cret",
                },
                {"address": "fd00:1::1", "peer_as": 65100},
            ],
        }
    )
    text = render_config(bgp, ["/usr/bin/python3", "-m", "relay", "/run/x/api.sock"])
    assert "run /usr/bin/python3 -m relay /run/x/api.sock;" in text
    first, second = text.split("neighbor ")[1:]
    assert first.startswith("10.0.1.1 {")
    assert "local-address 10.0.1.2;" in first
    assert 'md5-password "s3cret";' in first
    assert "family { ipv4 unicast; }" in first
    assert "hold-time 3;" in first
    assert second.startswith("fd00:1::1 {")
    assert "local-address" not in second
    assert "family { ipv6 unicast; }" in second
    # Routes come only from us, and a flapped session must not replay old ones.
    assert text.count("adj-rib-out false;") == 2
    assert text.count("neighbor-changes;") == 2


def test_environment_fails_closed() -> None:
    """ExaBGP dies with our relay and never opens a listening socket or named pipe."""
    env = render_environment("root")
    assert env["exabgp.api.terminate"] == "true"
    assert env["exabgp.api.respawn"] == "false"
    assert env["exabgp.api.cli"] == "false"
    assert env["exabgp.tcp.bind"] == ""
    assert env["exabgp.daemon.user"] == "root"
