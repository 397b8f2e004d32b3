"""docs/configuration.md and the example config cover every field the models have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anycast_announcer.cli import main
from anycast_announcer.config import Config, ConfigError, parse_config
from anycast_announcer.config.reference import field_paths, markdown, sections

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "configuration.md"
EXAMPLE = REPO / "configs" / "anycast-announcer.yaml"
MINIMAL = REPO / "tests" / "configs" / "valid" / "minimal.yaml"


class TestReference:
    def test_committed_reference_is_current(self) -> None:
        """The page is what the models say today; regenerate it after a model change."""
        assert REFERENCE.read_text(encoding="utf-8") == markdown(), (
            "docs/configuration.md is stale: run "
            "`anycast-announcer schema --markdown > docs/configuration.md`"
        )

    def test_cli_prints_the_reference(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["schema", "--markdown"]) == 0
        assert capsys.readouterr().out == markdown()

    def test_every_model_of_the_schema_has_a_section(self) -> None:
        """No model of ``anycast-announcer schema`` is left out of the walk."""
        in_schema = set(Config.model_json_schema()["$defs"]) | {"Config"}
        assert {section.model.__name__ for section in sections()} == in_schema

    def test_every_field_has_a_row_and_a_description(self) -> None:
        text = markdown()
        for section in sections():
            heading = f"## `{section.path}`" if section.path else "## The file (top level)"
            body = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
            for name, field in section.model.model_fields.items():
                assert f"| `{name}` |" in body, f"{section.path}.{name} has no row"
                assert field.description, f"{section.path}.{name} has no description"

    def test_ranges_and_defaults_are_shown(self) -> None:
        """A few rows checked cell by cell, so the columns cannot silently go empty."""
        rows = {
            line.split(" | ")[0]: line.split(" | ")
            for line in markdown().splitlines()
            if line.startswith("| `")
        }
        assert rows["| `rise`"][2:4] == ["`2`", "1 to 100"]
        assert rows["| `max_connections`"][2:4] == ["`64`", "4 to 4,096"]
        assert rows["| `expected_status`"][2:4] == ["`[200]`", "≥ 1 items, each 100 to 599"]
        assert rows["| `interval`"][1:4] == ["number", "`1`", "> 0, ≤ 3,600"]
        assert rows["| `local_as`"][2] == "**required**"


def _top_level_blocks(text: str) -> dict[str, str]:
    """The example split by top-level key, commented-out sections (``# rescue:``) included."""
    blocks: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        match = re.match(r"^(?:# )?([a-z_]+):", line)
        if match:
            current = match.group(1)
        blocks[current] = blocks.get(current, "") + line + "\n"
    return blocks


class TestExample:
    @pytest.mark.parametrize("path", field_paths())
    def test_example_shows_every_field(self, path: str) -> None:
        """Every field appears as a key (set or commented out) in its top-level section.

        The check is by section, not by exact nesting: a field name must occur as
        ``name:`` inside the block of the top-level key it belongs to.
        """
        top, _, rest = path.partition(".")
        top = top.removesuffix("[]")
        name = path.rsplit(".", 1)[-1]
        blocks = _top_level_blocks(EXAMPLE.read_text(encoding="utf-8"))
        assert top in blocks, f"the example has no {top}: section"
        block = blocks[top] if rest else blocks[top].splitlines()[0]
        assert re.search(rf"(?:^|[\s{{,#]){re.escape(name)}:", block), (
            f"configs/anycast-announcer.yaml does not show {path}"
        )

    def test_example_is_valid(self) -> None:
        parse_config(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))


class TestWholeSeconds:
    """Durations are numbers; where only whole seconds make sense, 9.0 still means 9."""

    def config(self, hold_time: str) -> Config:
        text = MINIMAL.read_text(encoding="utf-8").replace(
            "bgp:\n", f"bgp:\n  hold_time: {hold_time}\n", 1
        )
        return parse_config(text, "test.yaml")

    def test_whole_float_is_read_as_an_integer(self) -> None:
        hold_time = self.config("9.0").bgp.hold_time
        assert hold_time == 9
        assert type(hold_time) is int

    def test_fraction_is_refused_by_name(self) -> None:
        with pytest.raises(ConfigError) as caught:
            self.config("9.5")
        assert "bgp.hold_time: must be a whole number of seconds (got 9.5)" in caught.value.render()

    @pytest.mark.parametrize("value", ["true", "'9'"])
    def test_no_booleans_or_strings(self, value: str) -> None:
        with pytest.raises(ConfigError):
            self.config(value)

    def test_rescue_timers_take_whole_floats(self) -> None:
        text = MINIMAL.read_text(encoding="utf-8") + (
            "rescue:\n  members: [192.0.2.21, 192.0.2.22]\n  local_address: 192.0.2.21\n"
            "  probation: 3.0\n  learn_timeout: 5.0\n  orphan_window: 10.0\n"
        )
        rescue = parse_config(text, "test.yaml").rescue
        assert rescue is not None
        assert (rescue.probation, rescue.learn_timeout, rescue.orphan_window) == (3, 5, 10)
