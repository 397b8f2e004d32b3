"""BackgroundTasks: held until done, failures logged under the owner's event name."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from anycast_announcer.tasks import BackgroundTasks


async def _fail() -> None:
    raise RuntimeError("boom")


async def test_a_failed_task_is_logged_under_the_owners_event_and_forgotten() -> None:
    tasks = BackgroundTasks("resync_failed", level="error")
    with capture_logs() as logs:
        task = tasks.spawn(_fail())
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback runs on the next loop turn
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [
        ("resync_failed", "error", "RuntimeError('boom')")
    ]
    assert tasks.pending() == ()


async def test_pending_tasks_are_held_and_cancel_ends_them_quietly() -> None:
    tasks = BackgroundTasks("never")
    started = asyncio.Event()

    async def wait_forever() -> None:
        started.set()
        await asyncio.Event().wait()

    with capture_logs() as logs:
        task = tasks.spawn(wait_forever())
        await started.wait()
        assert tasks.pending() == (task,)
        tasks.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
    assert task.cancelled()
    assert tasks.pending() == ()
    assert logs == []
