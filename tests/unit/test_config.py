"""Loading and validating the configuration file: defaults, every rule, every file error."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from anycast_announcer.config import (
    CommandCheck,
    Config,
    ConfigError,
    HttpCheck,
    TcpCheck,
    load_config,
    parse_config,
)

VALID = """
bgp:
  local_as: 65101
  router_id: 10.0.0.11
  peers:
    - address: 192.0.2.1
      peer_as: 65001
    - address: 2001:db8::1
      peer_as: 65001
services:
  - name: web
    check: {type: http, url: "http://127.0.0.1:8080/health"}
  - name: dns
    check: {type: tcp, host: 127.0.0.1, port: 53}
  - name: disk
    check: {type: command, argv: [/usr/bin/check-disk]}
prefixes:
  - prefix: 198.51.100.10/32
    services: [web, dns]
  - prefix: 2001:db8:ff::10/128
    services: [disk]
"""


def problems(text: str) -> list[str]:
    """The problem lines parse_config reports for ``text`` (which must be invalid)."""
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    return raised.value.problems


def edited(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


class TestValidConfig:
    def test_parses_into_typed_models(self) -> None:
        """The example parses; checks become their own model types."""
        config = parse_config(VALID)
        assert isinstance(config, Config)
        assert [type(s.check) for s in config.services] == [HttpCheck, TcpCheck, CommandCheck]
        assert config.prefixes[1].prefix == ipaddress.ip_network("2001:db8:ff::10/128")
        assert config.service("dns").check == TcpCheck(type="tcp", host="127.0.0.1", port=53)

    def test_defaults(self) -> None:
        """Everything optional has the documented default."""
        config = parse_config(VALID)
        assert config.bgp.hold_time == 9
        assert config.bgp.bandwidth_split == "up_sessions"
        service = config.service("web")
        assert (service.interval, service.timeout, service.rise, service.fall) == (1.0, 0.5, 2, 2)
        check = service.check
        assert isinstance(check, HttpCheck)
        assert (check.expected_status, check.verify_tls, check.body_regex) == ([200], True, None)
        prefix = config.prefixes[0]
        assert prefix.require == "all"
        assert prefix.bandwidth_community == "transitive"
        assert (prefix.interface, prefix.manage_address, prefix.as_path_prepend) == ("lo", False, 0)
        assert config.http.listen == "127.0.0.1:9179"
        assert (config.logging.format, config.logging.level) == ("auto", "info")
        assert config.exabgp.ack_timeout == 5.0
        assert config.allowed_prefixes is None

    def test_models_are_frozen(self) -> None:
        """A running configuration is replaced, never edited."""
        config = parse_config(VALID)
        with pytest.raises(ValueError, match="frozen"):
            config.bgp.local_as = 1  # type: ignore[misc]  # the point of the test


class TestRules:
    """Each validation rule of the config package, asserted with the exact path it reports."""

    @pytest.mark.parametrize(
        ("old", "new", "expected"),
        [
            ("local_as: 65101", "local_as: 0", "bgp.local_as: Input should be greater than"),
            (
                "peer_as: 65001\n    - ",
                "peer_as: 4294967296\n    - ",
                "bgp.peers[0].peer_as: Input should be less than or equal to 4294967295",
            ),
            (
                "router_id: 10.0.0.11",
                "router_id: '::1'",
                "bgp.router_id: Input is not a valid IPv4",
            ),
            (
                "router_id: 10.0.0.11\n",
                "router_id: 10.0.0.11\n  hold_time: 1\n",
                "bgp.hold_time: must be 0 or between 3 and 65535 seconds",
            ),
            (
                "      peer_as: 65001\n    - address: 2001:db8::1",
                "      peer_as: 65001\n      local_address: 2001:db8::11\n"
                "    - address: 2001:db8::1",
                "bgp.peers[0]: local_address 2001:db8::11 is IPv6 but address 192.0.2.1 is IPv4",
            ),
            (
                "address: 2001:db8::1",
                "address: 192.0.2.1",
                "bgp.peers[1].address: duplicate peer address 192.0.2.1",
            ),
            (
                "      peer_as: 65001\n    - address: 2001",
                "      peer_as: 65001\n      md5_password: ''\n    - address: 2001",
                "bgp.peers[0].md5_password: must be 1 to 80 characters long",
            ),
            ("port: 53", "port: 65536", "services[1].check.port: Input should be less than"),
            (
                'url: "http://127.0.0.1:8080/health"',
                'url: "ftp://127.0.0.1/"',
                "services[0].check.url: String should match pattern",
            ),
            (
                'url: "http://127.0.0.1:8080/health"',
                'url: "https://127.0.0.1/"',
                "services[0].check: url scheme 'https' does not match check type 'http'",
            ),
            (
                '8080/health"}',
                '8080/health", body_regex: "[a-"}',
                "services[0].check.body_regex: not a valid regular expression",
            ),
            (
                '8080/health"}',
                '8080/health", expected_status: [99]}',
                "services[0].check.expected_status[0]: "
                "Input should be greater than or equal to 100",
            ),
            (
                '8080/health"}',
                '8080/health", host_header: ""}',
                "services[0].check.host_header: String should have at least 1 character",
            ),
            (
                "argv: [/usr/bin/check-disk]",
                "argv: []",
                "services[2].check.argv: List should have at least 1 item",
            ),
            (
                "type: tcp,",
                "type: udp,",
                "services[1].check.type: 'udp' is not one of 'tcp', 'http', 'https', 'command'",
            ),
            ("{type: tcp, host", "{host", "services[1].check.type: required key is missing"),
            (
                "  - name: dns\n",
                "  - name: dns\n    timeout: 3\n",
                "services[1]: timeout (3.0s) must not exceed interval (1.0s)",
            ),
            (
                "  - name: dns\n",
                "  - name: dns\n    interval: 0\n",
                "services[1].interval: Input should be greater than 0",
            ),
            (
                "  - name: dns\n",
                "  - name: dns\n    fall: 101\n",
                "services[1].fall: Input should be less than or equal to 100",
            ),
            ("name: disk", "name: -disk", "services[2].name: String should match pattern"),
            ("name: disk", "name: web", "services[2].name: duplicate service name 'web'"),
            (
                "services: [web, dns]",
                "services: [web, db]",
                "prefixes[0].services[1]: unknown service 'db'",
            ),
            (
                "services: [web, dns]",
                "services: [web, web]",
                "prefixes[0].services: a service is listed twice",
            ),
            (
                "services: [web, dns]",
                "services: []",
                "prefixes[0].services: List should have at least 1 item",
            ),
            (
                "prefix: 198.51.100.10/32",
                "prefix: 198.51.100.10/24",
                "prefixes[0].prefix: '198.51.100.10/24' has host bits set "
                "(did you mean 198.51.100.0/24?)",
            ),
            (
                "prefix: 198.51.100.10/32",
                "prefix: 198.51.100.10",
                "prefixes[0].prefix: '198.51.100.10' has no prefix length (e.g. 198.51.100.10/32)",
            ),
            (
                "prefix: 2001:db8:ff::10/128",
                "prefix: 2001:db8:ff::10",
                "prefixes[1].prefix: '2001:db8:ff::10' has no prefix length "
                "(e.g. 2001:db8:ff::10/128)",
            ),
            (
                "prefix: 198.51.100.10/32",
                "prefix: vip",
                "prefixes[0].prefix: 'vip' is not an IPv4 or IPv6 prefix",
            ),
            (
                "prefix: 198.51.100.10/32",
                "prefix: 2001:db8:ff::10/128",
                "prefixes[1].prefix: duplicate prefix 2001:db8:ff::10/128",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    communities: ['1:65536']\n",
                "prefixes[1].communities: '1:65536' is not a community 'A:B'",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    large_communities: ['1:2']\n",
                "prefixes[1].large_communities: '1:2' is not a large community 'A:B:C'",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    weight_community: {asn: 1}\n",
                "prefixes[1]: weight_community needs bandwidth_mbps",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    bandwidth_mbps: -5\n",
                "prefixes[1].bandwidth_mbps: Input should be greater than 0",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    bandwidth_asn: 65536\n",
                "prefixes[1].bandwidth_asn: Input should be less than or equal to 65535",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    med: -1\n",
                "prefixes[1].med: Input should be greater than or equal to 0",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    interface: ''\n",
                "prefixes[1].interface: String should have at least 1 character",
            ),
            (
                "    services: [disk]\n",
                "    services: [disk]\n    bandwidth_mbps: 1\n"
                "    weight_community: {asn: 1, unit_mbps: 0}\n",
                "prefixes[1].weight_community.unit_mbps: Input should be greater than 0",
            ),
        ],
    )
    def test_rule_reports_its_path(self, old: str, new: str, expected: str) -> None:
        """The broken value is named by its full path."""
        assert any(expected in line for line in problems(edited(old, new))), expected

    def test_ipv6_prefix_needs_an_ipv6_peer(self) -> None:
        """A prefix of a family no session carries could never be announced."""
        text = edited("    - address: 2001:db8::1\n      peer_as: 65001\n", "")
        assert problems(text) == [
            "prefixes[1].prefix: 2001:db8:ff::10/128 is IPv6 but no bgp.peers entry is, "
            "so it could never be announced"
        ]

    def test_prefix_outside_allowed_prefixes(self) -> None:
        """allowed_prefixes guards against announcing someone else's space."""
        text = VALID + "allowed_prefixes: [198.51.100.0/24]\n"
        assert problems(text) == [
            "prefixes[1].prefix: 2001:db8:ff::10/128 is outside allowed_prefixes"
        ]

    def test_backoff_order(self) -> None:
        """The initial restart backoff cannot exceed the maximum."""
        text = VALID + "exabgp: {restart_backoff_initial: 10, restart_backoff_max: 1}\n"
        assert problems(text) == [
            "exabgp.restart_backoff_initial: must not exceed restart_backoff_max"
        ]

    @pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:0", ":9179", "127.0.0.1:http"])
    def test_bad_listen_address(self, listen: str) -> None:
        """The status API address must be host:port; the path keeps its 'http' section."""
        assert problems(VALID + f"http: {{listen: '{listen}'}}\n") == [
            f"http.listen: {listen!r} is not host:port"
        ]

    def test_empty_listen_disables_the_api(self) -> None:
        """'' is the documented way to switch the status API off."""
        assert parse_config(VALID + "http: {listen: ''}\n").http.listen == ""

    @pytest.mark.parametrize(
        ("where", "expected"),
        [
            ("  local_as: 65101\n", "bgp.local_ass: unknown key (not allowed here)"),
            ("      peer_as: 65001\n", "bgp.peers[0].local_ass: unknown key (not allowed here)"),
            ("  - name: dns\n", "services[1].local_ass: unknown key (not allowed here)"),
            ("    services: [disk]\n", "prefixes[1].local_ass: unknown key (not allowed here)"),
        ],
    )
    def test_unknown_keys_at_each_level(self, where: str, expected: str) -> None:
        """A typo is an error wherever it is, never silently ignored."""
        indent = " " * (len(where) - len(where.lstrip(" -")))
        assert expected in problems(edited(where, f"{where}{indent}local_ass: 1\n"))

    def test_unknown_key_in_a_check_and_at_top_level(self) -> None:
        """Unknown keys inside a check (its tag hidden) and at the top level."""
        text = edited("port: 53}", "port: 53, proto: tcp}") + "prefix: []\n"
        assert problems(text) == [
            "services[1].check.proto: unknown key (not allowed here)",
            "prefix: unknown key (not allowed here)",
        ]

    def test_every_problem_is_reported_at_once(self) -> None:
        """Several independent mistakes are listed together, not one per run."""
        text = edited("local_as: 65101", "local_as: 0").replace("port: 53", "port: 0")
        assert len(problems(text)) == 2


class TestYaml:
    def test_duplicate_keys_are_rejected(self) -> None:
        """YAML would keep the last value silently; we refuse and say where."""
        text = edited("  local_as: 65101\n", "  local_as: 65101\n  local_as: 65102\n")
        assert problems(text) == ["invalid YAML: line 4, column 3: duplicate key 'local_as'"]

    def test_syntax_error_gives_line_and_column(self) -> None:
        """A broken flow mapping is located for the user."""
        [line] = problems("bgp: {local_as: 1\n")
        assert line.startswith("invalid YAML: line 2, column 1:")

    @pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "~\n"])
    def test_empty_file(self, text: str) -> None:
        """Empty and comment-only files say so."""
        assert problems(text) == ["the file is empty"]

    @pytest.mark.parametrize(
        ("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("42\n", "int")]
    )
    def test_top_level_must_be_a_mapping(self, text: str, kind: str) -> None:
        """A list or scalar at the top level is named."""
        assert problems(text) == [f"the top level must be a mapping, not {kind}"]

    def test_python_tags_are_refused(self) -> None:
        """Only safe YAML: object-construction tags are a YAML error, not code execution."""
        [line] = problems("x: !!python/object/apply:os.system ['true']\n")
        assert line.startswith("invalid YAML:")


class TestLoadConfig:
    def test_loads_a_file(self, tmp_path: Path) -> None:
        """A file on disk loads as its text would parse."""
        path = tmp_path / "config.yaml"
        path.write_text(VALID, encoding="utf-8")
        assert load_config(path) == parse_config(VALID)

    def test_errors_name_the_file(self, tmp_path: Path) -> None:
        """Every rendered line starts with the file name, as compilers do."""
        path = tmp_path / "config.yaml"
        path.write_text(edited("port: 53", "port: 0"), encoding="utf-8")
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        assert raised.value.render().startswith(f"{path}: services[1].check.port:")

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as raised:
            load_config(tmp_path / "absent.yaml")
        assert raised.value.problems == ["file not found"]

    def test_directory(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as raised:
            load_config(tmp_path)
        assert raised.value.problems == ["is a directory, not a file"]

    def test_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "latin1.yaml"
        path.write_bytes("bgp: {local_as: 65101}  # caf\u00e9\n".encode("latin-1"))
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        assert raised.value.problems == ["not UTF-8 text (byte 29)"]

    @pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges with setuid; needs root")
    def test_unreadable_file(self, tmp_path: Path) -> None:
        """Permission denied is reported, checked as an unprivileged user (root reads anything)."""
        tmp_path.chmod(0o755)
        path = tmp_path / "secret.yaml"
        path.write_text(VALID, encoding="utf-8")
        path.chmod(0o000)
        script = (
            # Import while still root: the interpreter's own files may be root-only here.
            "import os, sys\n"
            "from anycast_announcer.config import ConfigError, load_config\n"
            "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            "try:\n    load_config(sys.argv[1])\n"
            "except ConfigError as error:\n    print(error.problems)\n"
        )
        completed = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.stdout.strip() == "['permission denied']", completed.stderr


class TestWarnings:
    """Valid settings that FRR 8.4 would mangle are accepted with a warning."""

    def test_bandwidth_above_what_frr_84_holds_warns(self) -> None:
        from anycast_announcer.config import config_warnings, parse_config

        text = VALID_WARN_BASE.replace("BANDWIDTH", "100000")
        (warning,) = config_warnings(parse_config(text))
        assert warning.startswith("prefixes[0].bandwidth_mbps: 100000 exceeds what FRR 8.4")

    def test_ordinary_bandwidth_does_not_warn(self) -> None:
        from anycast_announcer.config import config_warnings, parse_config

        assert config_warnings(parse_config(VALID_WARN_BASE.replace("BANDWIDTH", "25000"))) == []


VALID_WARN_BASE = """
bgp: {local_as: 65001, router_id: 10.0.0.1, peers: [{address: 10.0.0.2, peer_as: 65100}]}
services: [{name: web, check: {type: tcp, host: 127.0.0.1, port: 80}}]
prefixes: [{prefix: 10.255.0.1/32, services: [web], bandwidth_mbps: BANDWIDTH}]
"""
