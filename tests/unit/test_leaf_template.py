"""docs/leaf.md shows the leaf template that the leaf-template lab runs, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "leaf.md"
MARKER = "<!-- template: containerlab/leaf-template/leaf1/frr.conf -->"


def documented_template() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    assert text.count(MARKER) == 1, f"docs/leaf.md should hold the marker {MARKER!r} once"
    match = re.match(r"\n```\n(.*?)```\n", text.split(MARKER, 1)[1], re.DOTALL)
    assert match, "the marker in docs/leaf.md should be followed by a ``` block"
    return match.group(1)


def test_the_lab_runs_the_documented_template() -> None:
    """Edit both or neither: the lab's leaf1 is the template the guide shows."""
    lab_config = (REPO / MARKER.split()[2]).read_text(encoding="utf-8")
    assert documented_template() == lab_config


def test_the_lab_uses_that_file_for_leaf1() -> None:
    topology = (REPO / "containerlab" / "leaf-template" / "leaf-template.clab.yml").read_text(
        encoding="utf-8"
    )
    assert "- leaf1/frr.conf:/etc/frr/frr.conf" in topology


def test_the_template_has_every_part_the_guide_promises() -> None:
    """Dynamic neighbours, the prefix allow-list, max-prefix, UCMP, GSHUT, the BFD place."""
    template = documented_template()
    for needle in (
        "bgp listen range",
        "peer-group",
        "prefix-list ANYCAST-V4",
        "maximum-prefix",
        "bgp bestpath bandwidth",
        "graceful-shutdown",
        "set local-preference 0",
        "BFD",
    ):
        assert needle in template, f"the leaf template lacks {needle!r}"
