"""RescueKeeper (workers/rescue.py): applies, drift checks and repairs, against a fake kernel."""

from __future__ import annotations

import asyncio
import ipaddress

from structlog.testing import capture_logs

from anycast_announcer.rescue.kernel import HostFacts, RescueError
from anycast_announcer.rescue.watch import Change
from anycast_announcer.workers.rescue import RescueKeeper
from tests.unit.rescue.fakes import FakeKernelPort
from tests.unit.rescue.plans import BASE, config

TWO = BASE.replace("members: [10.2.3.2, 10.2.1.2, 10.2.2.2]", "members: [10.2.1.2, 10.2.2.2]")
FACTS = HostFacts(ipaddress.ip_address("10.2.1.2"), 1500, "test")


class _NoFeed:
    """A change feed that never fires."""

    def open(self) -> None:
        return None

    async def changed(self) -> Change:
        await asyncio.Event().wait()
        return Change()

    def close(self) -> None:
        return None


class _Feed:
    """A change feed the test fires by hand."""

    def __init__(self) -> None:
        self.fired: asyncio.Queue[Change] = asyncio.Queue()

    def open(self) -> None:
        return None

    async def changed(self) -> Change:
        return await self.fired.get()

    def close(self) -> None:
        return None


def _keeper(kernel: FakeKernelPort, feed: object = None) -> RescueKeeper:
    return RescueKeeper(kernel=kernel, changes=lambda: feed or _NoFeed())  # type: ignore[arg-type,return-value]


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_drift_check_during_a_reload_does_not_undo_it() -> None:
    """Defect 1: a check that compared the kernel with the old plan while the reload's
    apply ran must not queue the old plan after the new one."""
    kernel = FakeKernelPort(FACTS)
    keeper = _keeper(kernel)
    await keeper.apply(config(base=TWO))
    kernel.check_gate, kernel.apply_gate = asyncio.Event(), asyncio.Event()
    kernel.in_sync_answer = False  # the kernel is half way to the new plan
    checking = asyncio.create_task(keeper.check(retry=True))
    await _settle()
    keeper.sync(config())  # the reload: three members
    await _settle()
    kernel.check_gate.set()
    await checking
    kernel.in_sync_answer = None  # from now on, the fake compares with what was applied
    kernel.apply_gate.set()
    await keeper.close()
    assert len(kernel.applied[-1].members) == 3
    assert [len(p.members) for p in kernel.applied] == [2, 3]


async def test_drift_after_an_apply_is_repaired() -> None:
    kernel = FakeKernelPort(FACTS)
    keeper = _keeper(kernel)
    await keeper.apply(config())
    kernel.in_sync_answer = False  # someone flushed the ruleset
    with capture_logs() as logs:
        await keeper.check()
        kernel.in_sync_answer = None
        await keeper.close()
    assert len(kernel.applied) == 2
    assert kernel.warm == [True, False]  # the repair puts the full table back at once
    drift = {"event": "rescue_drift", "action": "re-applying the plan", "log_level": "warning"}
    assert drift in logs


async def test_a_change_notification_triggers_the_repair_at_once() -> None:
    kernel = FakeKernelPort(FACTS)
    feed = _Feed()
    keeper = _keeper(kernel, feed)
    await keeper.apply(config())
    runner = asyncio.create_task(keeper.run())
    await _settle()
    kernel.in_sync_answer = False
    feed.fired.put_nowait(Change())
    for _ in range(100):
        await asyncio.sleep(0)
        if len(kernel.applied) == 2:
            break
    kernel.in_sync_answer = None
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await keeper.close()
    assert len(kernel.applied) == 2


async def test_a_notification_during_an_apply_is_checked_after_it() -> None:
    kernel = FakeKernelPort(FACTS)
    keeper = _keeper(kernel)
    await keeper.apply(config())
    kernel.apply_gate = asyncio.Event()
    keeper.sync(config(base=TWO))
    await _settle()
    await keeper.check()  # arrives while the apply runs: deferred, not lost
    checks = kernel.checks
    kernel.apply_gate.set()
    await keeper.close()
    assert kernel.checks == checks + 1
    assert len(kernel.applied) == 2


async def test_a_failed_apply_is_shown_and_not_retried_on_every_notification() -> None:
    kernel = FakeKernelPort(FACTS)
    keeper = _keeper(kernel)
    await keeper.apply(config())
    kernel.apply_error = RescueError("nft: broken")
    keeper.sync(config(base=TWO))
    await keeper.close()
    status = keeper.status()
    assert status is not None
    assert status.last_error == "nft: broken"
    kernel.in_sync_answer = False
    await keeper.check()
    await keeper.close()
    assert len(kernel.applied) == 1
    kernel.apply_error = None
    await keeper.check(retry=True)  # the slow periodic check tries again
    await keeper.close()
    assert len(kernel.applied) == 2


async def test_a_defect_in_the_shell_is_logged_shown_and_retried() -> None:
    """An exception other than RescueError (a bug) used to end the apply task silently:
    nothing logged, nothing shown, the data path never applied."""
    kernel = FakeKernelPort(FACTS)
    keeper = _keeper(kernel)
    kernel.apply_error = KeyError("dev")
    with capture_logs() as logs:
        keeper.sync(config())
        await keeper.close()
    events = [e["event"] for e in logs if e["event"] != "rescue_mtu"]
    assert events == ["rescue_apply_crashed", "rescue_not_applied"]
    status = keeper.status()
    assert status is not None
    assert status.last_error == "KeyError: 'dev'"
    assert not status.installed
    kernel.apply_error = None
    keeper.sync(config())
    await keeper.close()
    assert len(kernel.applied) == 1


async def test_an_unavailable_watch_leaves_the_periodic_check() -> None:
    class Refused(_NoFeed):
        def open(self) -> None:
            raise PermissionError(1, "Operation not permitted")

    kernel = FakeKernelPort(FACTS)
    keeper = RescueKeeper(kernel=kernel, changes=Refused)
    with capture_logs() as logs:
        runner = asyncio.create_task(keeper.run())
        await _settle()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert [e["event"] for e in logs] == ["rescue_watch_unavailable"]


async def test_a_deleted_table_is_written_back_before_anything_is_read() -> None:
    kernel = FakeKernelPort(FACTS)
    feed = _Feed()
    keeper = _keeper(kernel, feed)
    await keeper.apply(config())
    runner = asyncio.create_task(keeper.run())
    await _settle()
    checks = kernel.checks
    feed.fired.put_nowait(Change(frozenset({"ip"})))
    for _ in range(100):
        await asyncio.sleep(0)
        if kernel.checks > checks:
            break
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await keeper.close()
    assert kernel.restored == [frozenset({"ip"})]
    assert kernel.checks == checks + 1  # then the ordinary check, which finds it in sync


MEMBERSHIP = (
    BASE.split("rescue:\n")[0]
    + 'rescue:\n  membership: {community: "65000:4242", underlay_prefixes: [10.2.0.0/16]}\n'
)


async def test_learnt_members_reach_the_plan_and_an_oversized_group_is_an_error() -> None:
    """Learnt members join the plan; a learnt group the overlay range cannot hold is a
    RescueError (logged, shown in the status), not a crash of the apply task; a later
    group that fits is applied and clears the error."""
    kernel = FakeKernelPort(FACTS)
    applied: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    keeper = RescueKeeper(
        on_applied=lambda member, kept, peers: applied.append((member, kept, peers)),
        kernel=kernel,
        changes=_NoFeed,
    )
    await keeper.apply(config(base=MEMBERSHIP), ("10.2.2.2",))
    assert [str(m.address) for m in kernel.applied[-1].members] == ["10.2.1.2", "10.2.2.2"]
    assert applied == [("10.2.1.2", (), ("10.2.2.2",))]
    too_many = tuple(f"10.2.{n // 250}.{n % 250 + 2}" for n in range(200))
    with capture_logs() as logs:
        keeper.sync(config(base=MEMBERSHIP), too_many)
        await keeper.close()
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["rescue_not_applied"]
    failed = keeper.status()
    assert failed is not None
    assert "rescue.overlay_ipv4" in (failed.last_error or "")
    assert len(kernel.applied) == 1
    keeper.sync(config(base=MEMBERSHIP), ("10.2.2.2", "10.2.3.2"))
    await keeper.close()
    assert [str(m.address) for m in kernel.applied[-1].members] == [
        "10.2.1.2",
        "10.2.2.2",
        "10.2.3.2",
    ]
    recovered = keeper.status()
    assert recovered is not None
    assert recovered.last_error is None


class TestSecondEmptyingOfRegistered:
    """An apply that moved buckets emptied ``registered``; ``reregister_after`` later the
    keeper empties it once more, so a directory member that took the change a little
    later than this server gets the registrations (rescue/reregistration.py)."""

    QUICK = "  directory: {reregister_after: 0.05}\n"

    async def _run(self, keeper: RescueKeeper, kernel: FakeKernelPort, until: float) -> None:
        runner = asyncio.create_task(keeper.run())
        await asyncio.sleep(until)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await keeper.close()

    async def test_emptied_once_reregister_after_the_change(self) -> None:
        kernel = FakeKernelPort(FACTS, forgets=("ip", "ip6"))
        keeper = _keeper(kernel)
        loop = asyncio.get_running_loop()
        with capture_logs() as logs:
            await keeper.apply(config(self.QUICK))
            applied = loop.time()
            await self._run(keeper, kernel, 0.3)
        assert len(kernel.reregistered) == 1
        at, plan = kernel.reregistered[0]
        assert at - applied >= 0.05
        assert plan == kernel.applied[-1]
        assert {"event": "rescue_registrations_forgotten", "families": ["ip"]} in [
            {k: v for k, v in log.items() if k in ("event", "families")} for log in logs
        ]

    async def test_an_apply_that_kept_the_map_does_not_empty_it_again(self) -> None:
        kernel = FakeKernelPort(FACTS)  # registrations_forgotten: none
        keeper = _keeper(kernel)
        await keeper.apply(config(self.QUICK))
        await self._run(keeper, kernel, 0.15)
        assert kernel.reregistered == []

    async def test_zero_turns_it_off(self) -> None:
        kernel = FakeKernelPort(FACTS, forgets=("ip",))
        keeper = _keeper(kernel)
        await keeper.apply(config("  directory: {reregister_after: 0}\n"))
        await self._run(keeper, kernel, 0.15)
        assert kernel.reregistered == []

    async def test_a_group_forgotten_before_the_deadline_is_not_touched(self) -> None:
        kernel = FakeKernelPort(FACTS, forgets=("ip",))
        keeper = _keeper(kernel)
        await keeper.apply(config("  directory: {reregister_after: 0.1}\n"))
        keeper.forget()
        await self._run(keeper, kernel, 0.25)
        assert kernel.reregistered == []

    async def test_a_later_change_moves_the_deadline(self) -> None:
        """Its own apply emptied the set again: the delay counts from it."""
        kernel = FakeKernelPort(FACTS, forgets=("ip",))
        keeper = _keeper(kernel)
        loop = asyncio.get_running_loop()
        await keeper.apply(config("  directory: {reregister_after: 0.1}\n"))
        runner = asyncio.create_task(keeper.run())
        await asyncio.sleep(0.05)
        await keeper.apply(config("  directory: {reregister_after: 0.1}\n", base=TWO))
        second = loop.time()
        await asyncio.sleep(0.3)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert len(kernel.reregistered) == 1
        at, plan = kernel.reregistered[0]
        assert at - second >= 0.1
        assert len(plan.members) == 2
