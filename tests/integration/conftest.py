"""Fixtures of the tests that run sidecars in the single-leaf lab.

``lab`` deploys the lab once per test module under a unique name; ``running`` stops every
sidecar and service a test started and checks the leaf is empty again afterwards, so one
test's leftovers can never make the next one pass or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import ANYCAST_V4, Running, kernel_nexthops
from tests.lablib import SINGLE_LEAF, deployed, require_lab_host, wait_until


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The single-leaf lab, deployed for this module and always destroyed."""
    require_lab_host()
    with deployed(SINGLE_LEAF) as deployed_lab:
        yield deployed_lab


@pytest.fixture
def running(lab: Lab, tmp_path: Path) -> Iterator[Running]:
    """What the test starts; stopped at teardown, then leaf1 must hold no anycast route."""
    state = Running(lab, tmp_path)
    try:
        yield state
    finally:
        state.close()
        wait_until(
            lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
            timeout=10,
            message="leaf1 still routes the anycast prefix after the test",
        )
