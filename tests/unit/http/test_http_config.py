"""The ``http:`` section of the config: listener, unix socket, token file, body limit."""

from __future__ import annotations

import pytest

from anycast_announcer.config import ConfigError, HttpConfig, parse_config
from tests.unit.test_config import VALID


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return caught.value.problems


class TestHttpConfig:
    def test_defaults(self) -> None:
        """Loopback TCP, no token (mutating endpoints off), no unix socket, 64 KiB bodies."""
        config = HttpConfig()
        assert config.listen == "127.0.0.1:9179"
        assert config.token_file is None
        assert config.unix_socket is None
        assert config.max_body_bytes == 65536

    def test_all_fields(self) -> None:
        """Every field can be set from YAML."""
        config = parse_config(
            VALID + "http: {listen: '[::1]:9179', token_file: /etc/a/token, "
            "unix_socket: /run/a/api.sock, max_body_bytes: 4096}\n"
        )
        assert config.http.listen == "[::1]:9179"
        assert config.http.token_file == "/etc/a/token"  # noqa: S105  # a path
        assert config.http.unix_socket == "/run/a/api.sock"
        assert config.http.max_body_bytes == 4096

    @pytest.mark.parametrize(
        ("yaml", "needle"),
        [
            ("unix_socket: run/api.sock", "http.unix_socket"),
            ("unix_socket: /" + "a" * 120, "http.unix_socket"),
            ("max_body_bytes: 10", "http.max_body_bytes"),
            ("token_file: ''", "http.token_file"),
            ("tokenfile: /x", "http.tokenfile: unknown key"),
        ],
    )
    def test_invalid_values_name_the_field(self, yaml: str, needle: str) -> None:
        """Mistakes are reported with the field path."""
        problems = _problems(VALID + f"http: {{{yaml}}}\n")
        assert any(needle in problem for problem in problems), problems
