"""The supervisor's own duties around the core: a start that fails leaves nothing on
``lo``, and a background task that fails is logged (issue 20)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from anycast_announcer.config import load_config
from anycast_announcer.supervisor import Seams, Supervisor
from anycast_announcer.workers import Submit
from tests.unit.workers.fakes import BASE, FakeBook, FakeDetection, FakeDriver, Healthy


def _supervisor(tmp_path: Path, book: FakeBook, detections: list[FakeDetection]) -> Supervisor:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(BASE))

    def detection(submit: Submit) -> FakeDetection:
        detections.append(FakeDetection(submit))
        return detections[-1]

    return Supervisor(
        load_config(path), Seams(Healthy(), book, FakeDriver, detection), config_path=str(path)
    )


async def test_a_failed_start_removes_the_addresses_it_added(tmp_path: Path) -> None:
    """Regression: they stayed on lo, and the next start, finding them, never removed
    them. An address that was there before is left alone."""
    book = FakeBook({("lo", "10.255.0.2/32")})
    detections: list[FakeDetection] = []
    supervisor = _supervisor(tmp_path, book, detections)
    detections[0].fail_open = OSError("rtnetlink: permission denied")
    with pytest.raises(OSError, match="permission denied"):
        await asyncio.wait_for(supervisor.run(asyncio.Event()), 5)
    assert book.addresses == {("lo", "10.255.0.2/32")}
    assert detections[0].closed


async def test_an_address_that_cannot_be_added_removes_those_added_before(
    tmp_path: Path,
) -> None:
    book = FakeBook()
    book.fail_on = "10.255.0.2/32"
    supervisor = _supervisor(tmp_path, book, [])
    with pytest.raises(Exception, match="Operation not permitted"):
        await asyncio.wait_for(supervisor.run(asyncio.Event()), 5)
    assert book.addresses == set()


async def test_a_failing_background_task_is_logged(tmp_path: Path) -> None:
    """Regression: Detection.configure failing at a reload went unseen."""
    book = FakeBook()
    detections: list[FakeDetection] = []
    supervisor = _supervisor(tmp_path, book, detections)
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        changed = {**BASE, "services": [{**BASE["services"][0], "interval": 0.1}]}
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(changed))
        await asyncio.sleep(0)  # let the run start before the reload
        detections[0].fail_configure = OSError("sock_diag: out of memory")
        with capture_logs() as logs:
            result = await asyncio.wait_for(supervisor.reload(), 5)
            assert result.ok
            await _until(lambda: any(e["event"] == "background_task_failed" for e in logs))
        (failed,) = [e for e in logs if e["event"] == "background_task_failed"]
        assert "out of memory" in failed["error"]
        assert (failed["log_level"], failed["task"]) == ("error", "FakeDetection.configure")
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
    assert book.addresses == set()  # and the normal stop removed what it added


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll on the loop until ``predicate`` holds; a generous deadline, not a window."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)
