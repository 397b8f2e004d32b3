"""Config loading cannot be crashed or stalled, and never echoes a secret.

Each class here once escaped as something other than ConfigError (ValueError, TypeError,
RecursionError), took seconds of CPU (an alias bomb), passed values that break ExaBGP's
text (``"65001:100\\n"``, Arabic-Indic digits) or read ``yes`` as the number 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anycast_announcer.config import (
    PROBLEMS_SHOWN,
    Config,
    ConfigError,
    DampeningConfig,
    load_config,
    parse_config,
)
from anycast_announcer.config.document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    DocumentError,
    load_yaml_document,
    short_repr,
)

MINIMAL = textwrap.dedent(
    """\
    bgp:
      local_as: 65101
      router_id: 10.0.0.11
      peers:
        - address: 192.0.2.1
          peer_as: 65001
    services:
      - name: web
        check: {type: tcp, host: 127.0.0.1, port: 80}
    prefixes:
      - prefix: 198.51.100.10/32
        services: [web]
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text)
    assert raised.value.problems, "a ConfigError must say what is wrong"
    for line in raised.value.problems:
        assert "\n" not in line
        assert len(line) < 400, f"an error line must stay short, got {len(line)} characters"
    return raised.value.problems


def with_tail(tail: str) -> str:
    return MINIMAL + tail


def with_peer(extra: str) -> str:
    return MINIMAL.replace("      peer_as: 65001\n", f"      peer_as: 65001\n{extra}")


def with_prefix(extra: str) -> str:
    return MINIMAL + extra


def alias_bomb(levels: int, width: int = 9) -> str:
    """The classic: each level refers to the previous one ``width`` times."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


class TestDocumentsThatOnceEscaped:
    """Every way of failing to load a document is a ConfigError with a position."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                MINIMAL.replace("local_as: 65101", "local_as: !!int x"),
                "invalid YAML: line 2, column 13: cannot read tag:yaml.org,2002:int value: "
                "invalid literal for int() with base 10: 'x'",
            ),
            (
                with_tail("drain: {state_file: !!timestamp 2001-02-31}\n"),
                "invalid YAML: line 13, column 21: cannot read tag:yaml.org,2002:timestamp "
                "value: day is out of range for month",
            ),
            (
                with_tail("? {a: 1}\n: x\n"),
                "invalid YAML: line 13, column 3: a key cannot be a mapping",
            ),
            (
                with_tail("? [1, 2]\n: x\n"),
                "invalid YAML: line 13, column 3: a key cannot be a list",
            ),
            (
                with_tail("x: !!float not-a-float\n"),
                "invalid YAML: line 13, column 4: cannot read tag:yaml.org,2002:float value",
            ),
        ],
    )
    def test_failing_constructor(self, text: str, expected: str) -> None:
        """ValueError and TypeError from PyYAML's constructors become a positioned line."""
        assert any(line.startswith(expected) for line in problems(text)), problems(text)

    @pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 5000, 50_000])
    def test_deep_nesting(self, depth: int) -> None:
        """Deeper than MAX_DEPTH is refused before PyYAML's recursive composer runs."""
        [line] = problems(with_tail("x: " + "[" * depth + "]" * depth + "\n"))
        assert line.startswith("invalid YAML: line 13")
        assert f"nested more than {MAX_DEPTH} levels deep" in line

    def test_block_nesting_at_the_limit_loads(self) -> None:
        """MAX_DEPTH levels are fine (the limit is not off by one)."""
        data = load_yaml_document("[" * MAX_DEPTH + "]" * MAX_DEPTH)
        for _ in range(MAX_DEPTH - 1):
            data = data[0]
        assert data == []

    def test_alias_bomb(self) -> None:
        """A file of a few hundred bytes describing 9**9 values is refused unexpanded."""
        text = with_tail(alias_bomb(10))
        assert len(text.encode()) < 1200
        [line] = problems(text)
        assert "holds more than 100000 values, counting what its aliases expand to" in line

    def test_modest_aliases_still_work(self) -> None:
        """Anchors and aliases as people use them (a shared check) are fine."""
        text = MINIMAL.replace(
            "    check: {type: tcp, host: 127.0.0.1, port: 80}\n",
            "    check: &tcp80 {type: tcp, host: 127.0.0.1, port: 80}\n"
            "  - name: web2\n    check: *tcp80\n",
        )
        config = parse_config(text)
        assert config.services[1].check == config.services[0].check

    def test_recursive_alias(self) -> None:
        """A value that contains itself would make validation loop; it is refused."""
        [line] = problems(with_tail("allowed_prefixes: &me [10.0.0.0/8, *me]\n"))
        assert "alias *me refers to a value that contains it" in line

    def test_huge_integer(self) -> None:
        """5000 digits exceed Python's int parsing limit: a message, not a ValueError."""
        [line] = problems(with_tail("x: " + "7" * 5000 + "\n"))
        assert "cannot read tag:yaml.org,2002:int value: Exceeds the limit" in line

    def test_huge_value_is_never_printed_whole(self) -> None:
        """A long wrong value is cut in the message (the old formatter repr'd it whole)."""
        [line] = problems(MINIMAL.replace("local_as: 65101", "local_as: " + "x" * 200_000))
        assert line.startswith("bgp.local_as: Input should be a valid integer (got 'xxxx")
        assert "(200000 characters)" in line

    def test_many_problems_are_summed_up(self) -> None:
        """90,000 wrong entries give PROBLEMS_SHOWN lines and a count, not 90,000 lines."""
        lines = problems(with_tail("allowed_prefixes: [" + ", ".join(["x"] * 90_000) + "]\n"))
        assert len(lines) == PROBLEMS_SHOWN + 1
        assert lines[-1] == f"... and {90_000 - PROBLEMS_SHOWN} more problems"

    def test_non_string_keys_are_named(self) -> None:
        """A key that YAML reads as a date or a number gets a readable path."""
        lines = problems(with_tail("2024-01-01: x\n3.5: y\n"))
        assert lines == [
            "['datetime.date(2024, 1, 1)']: Keys should be strings (got date)",
            "['3.5']: Keys should be strings (got 3.5)",
        ]

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.sampled_from([*"[]{}&*!:,-? \n\t'\"ab1", "!!int ", "&a ", "*a", "? ", "!!set "])
        ).map("".join)
    )
    def test_any_text_loads_or_is_a_document_error(self, text: str) -> None:
        """The loader's contract: data or DocumentError, nothing else, for any text."""
        try:
            load_yaml_document(text)
        except DocumentError as error:
            message = str(error)
        else:
            message = ""
        assert "\n" not in message


class TestFileLimits:
    def test_a_huge_file_is_not_read_whole(self, tmp_path: Path) -> None:
        path = tmp_path / "big.yaml"
        path.write_bytes(MINIMAL.encode() + b"#" * MAX_DOCUMENT_BYTES)
        with pytest.raises(ConfigError) as raised:
            load_config(path)
        assert raised.value.problems == ["larger than 1024 KiB, not a config file"]

    def test_a_device_is_not_read_forever(self) -> None:
        with pytest.raises(ConfigError) as raised:
            load_config("/dev/zero")
        assert raised.value.problems == ["larger than 1024 KiB, not a config file"]

    @pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
    def test_memory_error_is_a_config_error(self, tmp_path: Path) -> None:
        """With the address space nearly used up, loading fails as a message, exit 2.

        A child process gets a ceiling a little above what it uses after importing
        everything, then loads a file whose parse needs more than that.
        """
        path = tmp_path / "wide.yaml"
        path.write_text(with_tail("x: [" + ", ".join(["abcdefgh"] * 90_000) + "]\n"))
        script = textwrap.dedent(
            f"""
            import resource, sys
            from anycast_announcer.cli import main
            import anycast_announcer.config, anycast_announcer.config.document
            with open("/proc/self/statm") as statm:
                size = int(statm.read().split()[0]) * resource.getpagesize()
            resource.setrlimit(resource.RLIMIT_AS, (size + 8 * 2**20, resource.RLIM_INFINITY))
            sys.exit(main(["check-config", {str(path)!r}]))
            """
        )
        completed = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert completed.returncode == 2, completed.stderr
        assert "Traceback" not in completed.stderr
        assert completed.stderr == f"{path}: invalid YAML: not enough memory to load the document\n"


BOOLEANS = ["yes", "no", "on", "off", "true", "false", "True"]


class TestNoBooleansForNumbers:
    @pytest.mark.parametrize("word", BOOLEANS)
    @pytest.mark.parametrize(
        ("old", "new", "path"),
        [
            ("local_as: 65101", "local_as: {}", "bgp.local_as"),
            ("peer_as: 65001", "peer_as: {}", "bgp.peers[0].peer_as"),
            ("port: 80", "port: {}", "services[0].check.port"),
            ("services: [web]", "services: [web]\n    med: {}", "prefixes[0].med"),
            ("services: [web]", "services: [web]\n    bandwidth_mbps: {}", "prefixes[0]."),
            ("services: [web]", "services: [web]\n    as_path_prepend: {}", "prefixes[0]."),
            ("port: 80}", "port: 80}}\n    rise: {}", "services[0].rise"),
            ("port: 80}", "port: 80}}\n    interval: {}", "services[0].interval"),
        ],
    )
    def test_boolean_is_not_a_number(self, word: str, old: str, new: str, path: str) -> None:
        """`local_as: yes` used to become AS 1; now every number field refuses booleans."""
        lines = problems(MINIMAL.replace(old, new.format(word)))
        assert any(
            line.startswith(path) and "must be a number, not a boolean" in line for line in lines
        ), lines

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("local_as: 65101", "local_as: '65101'"),
            ("port: 80", "port: '80'"),
            ("services: [web]", "services: [web]\n    manage_address: 1"),
            ("services: [web]", "services: [web]\n    bandwidth_mbps: .inf"),
        ],
    )
    def test_no_other_coercions(self, old: str, new: str) -> None:
        """Numbers in quotes, 1 for a boolean and infinities are refused too."""
        problems(MINIMAL.replace(old, new))

    def test_dampening_numbers_are_strict(self) -> None:
        lines = problems(MINIMAL + "    dampening: {suppress: on}\n")
        assert lines == [
            "prefixes[0].dampening.suppress: must be a number, not a boolean (got true; "
            "YAML reads yes/no/on/off/true/false as booleans)"
        ]

    def test_integers_still_fill_float_fields(self) -> None:
        config = parse_config(MINIMAL + "    bandwidth_mbps: 1000\n")
        assert config.prefixes[0].bandwidth_mbps == 1000.0


def quoted_yaml(value: str) -> str:
    return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


class TestExabgpTextIsAscii:
    @pytest.mark.parametrize(
        "value",
        [
            "65001:100\n",
            "65001:100\r",
            "65001:100 ",
            " 65001:100",
            "\u0661:\u0662",
            "\uff16\uff15\uff10\uff10\uff11:1",
            "65001:1\n65001:2",
            "65001:100;",
            "1:70000",
            "",
        ],
    )
    def test_community(self, value: str) -> None:
        lines = problems(MINIMAL + f"    communities: [{quoted_yaml(value)}]\n")
        assert lines[0].startswith("prefixes[0].communities: ")
        assert "is not a community 'A:B'" in lines[0]

    @pytest.mark.parametrize(
        "value",
        ["65001:1:2\n", "\u0661:\u0662:\u0663", "1:2:3 ", "1:2:4294967296", "1:2"],
    )
    def test_large_community(self, value: str) -> None:
        lines = problems(MINIMAL + f"    large_communities: [{quoted_yaml(value)}]\n")
        assert "is not a large community 'A:B:C'" in lines[0]

    def test_valid_communities_pass(self) -> None:
        config = parse_config(
            MINIMAL + "    communities: ['0:0', '65535:65535']\n"
            "    large_communities: ['4294967295:0:1']\n"
        )
        assert config.prefixes[0].communities == ["0:0", "65535:65535"]

    @pytest.mark.parametrize(
        "value",
        [
            "Pa\\ss",
            "x\\u0022y",
            'quote"d',
            "quote'd",
            "with blank",
            "tab\there",
            "new\nline",
            "p\u00e4sswort",
            "\u0661\u0662\u0663",
            "x" * 81,
            "",
        ],
    )
    def test_md5_password(self, value: str) -> None:
        lines = problems(with_peer(f"      md5_password: {quoted_yaml(value)}\n"))
        assert lines[0].startswith("bgp.peers[0].md5_password: ")

    def test_md5_password_allows_what_exabgp_reads_literally(self) -> None:
        """Printable ASCII with separators: ExaBGP keeps them inside the quotes."""
        value = "a#b;c{d}e[f],g(h)i!j$k%l&m*n+o-p.q/r:s<t=u>v?w@x^y_z`|~0"
        config = parse_config(with_peer(f"      md5_password: {quoted_yaml(value)}\n"))
        assert config.bgp.peers[0].md5_password == value


class TestSecretsAreNeverEchoed:
    @pytest.mark.parametrize(
        "value",
        [
            "'zq9 Geheim zq8Geheim'",
            "'zq\u00e4ss-Geheim-123'",
            "'zq9Geheim\\zq8Geheim'",
            "3141592653589793",
            "[zq9Geheim-in-a-list]",
            "{pass: zq9Geheim-in-a-map}",
            "'" + "zq9Geheim" * 20 + "'",
        ],
    )
    def test_md5_password_value_is_not_in_the_message(self, value: str) -> None:
        """/status shows a rejected reload's message: it must not carry the password."""
        lines = problems(with_peer(f"      md5_password: {value}\n"))
        secret_bits = re.findall(r"[A-Za-z0-9\u00e4]{5,}", value)
        text = "\n".join(lines)
        assert lines[0].startswith("bgp.peers[0].md5_password")
        for bit in secret_bits:
            assert bit not in text, (bit, text)


class TestNewFields:
    @pytest.mark.parametrize("value", [0, 3, 5, 3600, 4.5])
    def test_watchdog_accepts(self, value: float) -> None:
        config = parse_config(MINIMAL + f"exabgp: {{watchdog: {value}}}\n")
        assert config.exabgp.watchdog == value

    @pytest.mark.parametrize("value", ["1", "2.9", "-1", "3601", "yes"])
    def test_watchdog_refuses(self, value: str) -> None:
        [line] = problems(MINIMAL + f"exabgp: {{watchdog: {value}}}\n")
        assert line.startswith("exabgp.watchdog: ")

    def test_watchdog_default_is_on(self) -> None:
        assert parse_config(MINIMAL).exabgp.watchdog == 5.0

    @pytest.mark.parametrize(
        "value",
        ["run", "/run/a\nb", "/run/quo'te", '/run/quo"te', "/run/back\\slash", "/x" * 60],
    )
    def test_run_dir_refuses(self, value: str) -> None:
        [line] = problems(MINIMAL + f"exabgp: {{run_dir: {quoted_yaml(value)}}}\n")
        assert line.startswith("exabgp.run_dir: ")

    def test_run_dir_may_hold_blanks(self) -> None:
        config = parse_config(MINIMAL + "exabgp: {run_dir: '/run/any cast'}\n")
        assert config.exabgp.run_dir == "/run/any cast"

    def test_http_limits(self) -> None:
        config = parse_config(
            MINIMAL
            + "http: {max_connections: 16, header_timeout: 2, allowed_hosts: [Sidecar.Lan]}\n"
        )
        assert (config.http.max_connections, config.http.header_timeout) == (16, 2.0)
        assert config.http.allowed_hosts == ["sidecar.lan"]


def test_short_repr_is_bounded() -> None:
    """Never builds the repr of a big value to cut it afterwards."""
    nested: Any = []
    for _ in range(20):
        nested = [nested, nested]  # 2**20 leaves if expanded
    assert short_repr(nested) == "a list"
    assert short_repr("x" * 10**6).endswith("(1000000 characters)")
    assert short_repr(10**5000).startswith("an integer of about")
    assert short_repr([]) == "[]"
    assert short_repr(["a", 1]) == "['a', 1]"


def test_docs_state_the_dampening_defaults_of_the_code() -> None:
    """docs/reliability.md's numbers are the code's (it once said suppress 3000, code 2500)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    match = re.search(
        r"penalty (?P<penalty>[\d.]+) per health withdrawal, half-life (?P<half_life>[\d.]+) s, "
        r"suppress (?P<suppress>[\d.]+), reuse (?P<reuse>[\d.]+), max (?P<max_suppress>[\d.]+) s",
        docs,
    )
    assert match is not None, "the dampening sentence in docs/reliability.md changed shape"
    defaults = DampeningConfig()
    for field, text in match.groupdict().items():
        assert float(text) == getattr(defaults, field), field


def test_the_base_example_is_valid() -> None:
    """The example in this module is valid, so every failure above is the edit's."""
    assert isinstance(parse_config(MINIMAL), Config)


INVALID = Path(__file__).resolve().parents[1] / "configs" / "invalid"
LOADER_CLASSES = sorted(
    path
    for path in INVALID.glob("yaml-*.yaml")
    if path.stem
    in {
        "yaml-int-tag-fails",
        "yaml-timestamp-impossible",
        "yaml-unhashable-key",
        "yaml-recursive-alias",
        "yaml-huge-integer",
        "yaml-deep-nesting",
        "yaml-alias-bomb",
    }
)


def test_every_loader_class_has_a_file() -> None:
    assert len(LOADER_CLASSES) == 7


@pytest.mark.parametrize("path", LOADER_CLASSES, ids=[p.stem for p in LOADER_CLASSES])
def test_check_config_as_a_process(path: Path) -> None:
    """The real command: exit status 2, one `path: message` line, no traceback. (Each took
    about 0.2 s as a whole process here; the timeout only keeps a hang from stalling CI.)"""
    completed = subprocess.run(
        [sys.executable, "-m", "anycast_announcer", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"{path}: invalid YAML: line ")
