"""docs/leaf.md shows the leaf template that the leaf-template lab runs, byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "leaf.md"
MARKER = "<!-- template: containerlab/leaf-template/leaf1/frr.conf -->"
# The host part of the leaf template: the anti-spoofing filter (nftables).
HOST_MARKER = "<!-- template: containerlab/leaf-template/leaf1/antispoof.nft -->"


def documented_template(marker: str = MARKER) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    assert text.count(marker) == 1, f"docs/leaf.md should hold the marker {marker!r} once"
    match = re.match(r"\n```\n(.*?)```\n", text.split(marker, 1)[1], re.DOTALL)
    assert match, "the marker in docs/leaf.md should be followed by a ``` block"
    return match.group(1)


def test_the_lab_runs_the_documented_template() -> None:
    """Edit both or neither: the lab's leaf1 is the template the guide shows."""
    for marker in (MARKER, HOST_MARKER):
        lab_file = (REPO / marker.split()[2]).read_text(encoding="utf-8")
        assert documented_template(marker) == lab_file, marker


def test_the_lab_uses_that_file_for_leaf1() -> None:
    topology = (REPO / "containerlab" / "leaf-template" / "leaf-template.clab.yml").read_text(
        encoding="utf-8"
    )
    assert "- leaf1/frr.conf:/etc/frr/frr.conf" in topology
    # The anti-spoofing filter is bound and loaded.
    assert "- leaf1/antispoof.nft:/etc/nftables.d/leaf-antispoof.nft" in topology
    assert "- nft -f /etc/nftables.d/leaf-antispoof.nft" in topology


def test_the_template_has_every_part_the_guide_promises() -> None:
    """Dynamic neighbours, the prefix allow-list, max-prefix, UCMP, GSHUT, BFD."""
    template = documented_template()
    for needle in (
        "bgp listen range",
        "peer-group",
        "prefix-list ANYCAST-V4",
        "maximum-prefix",
        "bgp bestpath bandwidth",
        "graceful-shutdown",
        "set local-preference 0",
        "neighbor SERVERS-V4 bfd profile servers",
        "neighbor SERVERS-V6 bfd profile servers",
        "\nbfd\n profile servers\n",
    ):
        assert needle in template, f"the leaf template lacks {needle!r}"
