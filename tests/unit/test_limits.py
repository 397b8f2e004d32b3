"""RLIMIT_NOFILE is raised to the hard limit at start (real setrlimit on this process)."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from anycast_announcer.limits import raise_nofile_limit


@pytest.fixture
def lowered_soft_limit() -> Iterator[tuple[int, int]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        yield soft, hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_raises_soft_to_hard(lowered_soft_limit: tuple[int, int]) -> None:
    _, hard = lowered_soft_limit
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    expected = nr_open if hard == resource.RLIM_INFINITY else min(hard, nr_open)
    change = raise_nofile_limit()
    assert change.before == 256
    assert change.after == expected
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)


def test_never_lowers(lowered_soft_limit: tuple[int, int]) -> None:
    raise_nofile_limit()
    first = resource.getrlimit(resource.RLIMIT_NOFILE)
    change = raise_nofile_limit()
    assert change.before == change.after == first[0]
