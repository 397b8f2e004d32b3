"""The rescue: section of the config: defaults, and every mistake named by its path."""

from __future__ import annotations

import ipaddress

import pytest

from anycast_announcer.config import Config, ConfigError, parse_config
from tests.unit.rescue.plans import BASE


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    return raised.value.problems


def with_rescue(lines: str) -> str:
    """BASE with its rescue section replaced by ``lines`` (indented two spaces)."""
    return BASE.split("rescue:\n")[0] + "rescue:\n" + lines


def test_defaults() -> None:
    rescue = parse_config(BASE).rescue
    assert rescue is not None
    assert [str(m) for m in rescue.members] == ["10.2.3.2", "10.2.1.2", "10.2.2.2"]
    assert rescue.local_address is None
    assert (rescue.vni, rescue.udp_port) == (4242, 4800)
    assert (rescue.device, rescue.feedback_device) == ("anycast-rsc", "anycast-fb")
    assert rescue.overlay_ipv4 == ipaddress.IPv4Network("169.254.90.0/24")
    assert (rescue.probation, rescue.learn_timeout, rescue.orphan_window) == (3, 5, 10)
    assert rescue.feedback_interval == 1.0
    assert rescue.clamp_mss


def test_the_second_emptying_of_registered_defaults_to_five_seconds_and_can_be_off() -> None:
    rescue = parse_config(BASE).rescue
    assert rescue is not None
    assert rescue.directory.reregister_after == 5.0
    for value, expected in (("0", 0.0), ("2", 2.0), ("0.5", 0.5)):
        lines = f"  members: [10.2.1.2, 10.2.2.2]\n  directory: {{reregister_after: {value}}}\n"
        text = with_rescue(lines)
        configured = parse_config(text).rescue
        assert configured is not None
        assert configured.directory.reregister_after == expected


def test_rescue_is_optional() -> None:
    assert parse_config(BASE.split("rescue:\n")[0]).rescue is None


def test_the_schema_documents_the_section() -> None:
    schema = Config.model_json_schema()
    assert "rescue" in schema["properties"]
    assert "members" in schema["$defs"]["RescueConfig"]["properties"]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            "  members: [10.2.1.2, 10.2.2.2, 10.2.1.2]\n",
            "rescue.members[2]: duplicate member 10.2.1.2 (also members[0])",
        ),
        (
            '  members: [10.2.1.2, "fd00::2"]\n',
            "rescue.members[1]: fd00::2 is IPv6 but members[0] is IPv4; the underlay must "
            "be one address family",
        ),
        ("  members: [10.2.1.2, 127.0.0.1]\n", "rescue.members[1]: 127.0.0.1 is not a usable"),
        ("  members: [10.2.1.2]\n", "rescue.members: list at least 2 members"),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  local_address: 10.2.9.9\n",
            "rescue.local_address: 10.2.9.9 is not one of rescue.members",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  device: x\n  feedback_device: x\n",
            "rescue.feedback_device: must differ from rescue.device",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  device: anycast-rescue-device\n",
            "rescue.device: String should match pattern",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2, 10.2.3.2]\n  overlay_ipv4: 169.254.90.0/29\n",
            "rescue.overlay_ipv4: 169.254.90.0/29 holds 1 members per half, 3 are configured; "
            "use a /28 or larger",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  probation: 1\n",
            "rescue.probation: must be longer than feedback_interval",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  feedback_interval: 3\n  probation: 4\n",
            "rescue.learn_timeout: must be at least twice feedback_interval",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  orphan_window: 0\n",
            "rescue.orphan_window: Input should be greater than or equal to 1",
        ),
        ("  members: [10.2.1.2, 10.2.2.2]\n  vni: 16777215\n", "rescue.vni: Input should be"),
        ("  members: [10.2.1.2, 10.2.2.2]\n  udp_port: 0\n", "rescue.udp_port: Input should be"),
        ("  members: [10.2.1.2, 10.2.2.2]\n  mtu: 9000\n", "rescue.mtu: unknown key"),
        ("  members: [10.2.1.2, 10.2.2.2]\n  underlay_mtu: 576\n", "rescue.underlay_mtu:"),
        ("  members: 10.2.1.2\n", "rescue.members: Input should be a valid list"),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  reset_guard_mark: 0x300000\n",
            "rescue.reset_guard_mark: 0x300000 has more than one bit set",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  reset_guard_mark: 0x100000000\n",
            "rescue.reset_guard_mark: Input should be less than or equal to",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  directory: {register_interval: 300}\n",
            "rescue.directory.entry_timeout: must be longer than register_interval",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  directory: {reregister_after: 60}\n",
            "rescue.directory.reregister_after: 60 must be shorter than register_interval (60)",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  directory: {reregister_after: -1}\n",
            "rescue.directory.reregister_after: Input should be greater than or equal to 0",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  directory: {buckets: 5000}\n",
            "rescue.directory.buckets: Input should be less than or equal to 4096",
        ),
        (
            "  members: [10.2.1.2, 10.2.2.2]\n  directory: {bucket: 16}\n",
            "rescue.directory.bucket: unknown key",
        ),
    ],
)
def test_mistakes_are_named_by_their_path(lines: str, expected: str) -> None:
    found = problems(with_rescue(lines))
    assert any(expected in problem for problem in found), found


def test_rescue_install_refuses_a_config_without_the_section(
    tmp_path: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 and a path-style message, before anything touches the kernel."""
    from pathlib import Path

    from anycast_announcer.cli import EXIT_USAGE, main

    path = Path(str(tmp_path)) / "plain.yaml"
    path.write_text(BASE.split("rescue:\n")[0], encoding="utf-8")
    assert main(["rescue", "install", "-c", str(path)]) == EXIT_USAGE
    assert capsys.readouterr().err == f"{path}: rescue: the config has no rescue section\n"
    broken = Path(str(tmp_path)) / "broken.yaml"
    broken.write_text(with_rescue("  members: [10.2.1.2, 10.2.1.2]\n"), encoding="utf-8")
    assert main(["rescue", "install", "-c", str(broken)]) == EXIT_USAGE
    assert "rescue.members[1]: duplicate member" in capsys.readouterr().err


MEMBERSHIP = '  membership: {community: "65000:4242", underlay_prefixes: [10.2.0.0/16]}\n'


class TestMembership:
    def test_membership_needs_no_member_list(self) -> None:
        """A server joins a group by naming it: no list of the others."""
        rescue = parse_config(with_rescue(MEMBERSHIP)).rescue
        assert rescue is not None
        assert rescue.membership is not None
        assert rescue.members == []
        assert rescue.membership.hold_down == 900
        assert rescue.membership.underlay_prefixes == [ipaddress.ip_network("10.2.0.0/16")]

    def test_static_members_stay_an_option_beside_it(self) -> None:
        rescue = parse_config(with_rescue(MEMBERSHIP + "  members: [10.2.9.2]\n")).rescue
        assert rescue is not None
        assert [str(m) for m in rescue.members] == ["10.2.9.2"]

    @pytest.mark.parametrize(
        ("lines", "expected"),
        [
            (
                '  membership: {community: "65000:99999", underlay_prefixes: [10.2.0.0/16]}\n',
                "rescue.membership.community: '65000:99999' is not a community",
            ),
            (
                '  membership: {community: "65000:1", underlay_prefixes: []}\n',
                "rescue.membership.underlay_prefixes: List should have at least 1 item",
            ),
            (
                '  membership: {community: "65000:1", underlay_prefixes: [10.2.0.0/16, '
                '"fd00::/64"]}\n',
                "rescue.membership.underlay_prefixes[1]: fd00::/64 is IPv6",
            ),
            (
                MEMBERSHIP + "  members: [10.3.0.2]\n",
                "rescue.members[0]: 10.3.0.2 is outside rescue.membership.underlay_prefixes",
            ),
            (
                MEMBERSHIP + "  local_address: 10.3.0.2\n",
                "rescue.local_address: 10.3.0.2 is outside rescue.membership.underlay_prefixes",
            ),
            (
                '  membership: {community: "65000:1", underlay_prefixes: [10.2.0.0/16], '
                "hold_down: -1}\n",
                "rescue.membership.hold_down: Input should be greater than or equal to 0",
            ),
        ],
    )
    def test_mistakes_are_named_by_their_path(self, lines: str, expected: str) -> None:
        found = problems(with_rescue(lines))
        assert any(expected in problem for problem in found), found


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ("[10.254.0.0/24]", "route_prefixes[0]: 10.254.0.0/24 must have the family and length"),
        ("[10.2.0.0/16]", "route_prefixes[0]: 10.2.0.0/16 overlaps the underlay"),
        ("[10.254.0.0/16, 10.253.0.0/16]", "route_prefixes: 2 given for 1 underlay_prefixes"),
    ],
)
def test_route_prefixes_mirror_the_underlay(routes: str, expected: str) -> None:
    lines = (
        '  membership: {community: "65000:4242", underlay_prefixes: [10.2.0.0/16], '
        f"route_prefixes: {routes}}}\n"
    )
    found = problems(with_rescue(lines))
    assert any(expected in problem for problem in found), found
