"""Every config file we ship validates, so examples and lab files never rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from anycast_announcer.config import config_warnings, load_config

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(
    [
        REPO / "configs" / "anycast-announcer.yaml",
        *REPO.glob("containerlab/*/*/anycast-announcer.yaml"),
    ]
)


def test_there_is_something_to_check() -> None:
    """The example and at least the six lab servers."""
    assert len(SHIPPED) >= 7


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_config_is_valid_and_warns_about_nothing(path: Path) -> None:
    config = load_config(path)
    assert config_warnings(config) == []
