"""DrainWorkers: the hook first, then connection counts, one worker per prefix; the
hook runner and the netlink count are fakes (where the worker leaves the process)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from structlog.testing import capture_logs

from anycast_announcer.config import CommandHook, HttpHook
from anycast_announcer.core.effects import StartDrainWorker
from anycast_announcer.core.inputs import ConnectionsCounted, DrainHookFinished, Input
from anycast_announcer.workers.drains import DrainWorkers
from tests.unit.workers.polling import until

PREFIX = "10.255.0.1/32"
HOOK = CommandHook(type="command", argv=["/usr/local/bin/shed-connections"])


def order(prefix: str = PREFIX, hook: CommandHook | None = None) -> StartDrainWorker:
    return StartDrainWorker(
        prefix=prefix, hook=hook, hook_timeout=7.0, address="10.255.0.1", ports=(80, 443)
    )


class Counts:
    """The netlink count: answers from a script (an exception is raised), then the last."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, tuple[int, ...]]] = []

    def __call__(self, address: str, ports: Collection[int]) -> int:
        self.calls.append((address, tuple(ports)))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class TestDrainWorkers:
    async def test_the_hook_runs_first_then_counts_follow(self) -> None:
        seen: list[Input] = []
        hooks: list[tuple[CommandHook | HttpHook, float]] = []

        async def hook(spec: CommandHook | HttpHook, timeout: float) -> tuple[bool, str]:
            hooks.append((spec, timeout))
            return True, "exit 0"

        workers = DrainWorkers(seen.append, count=Counts(3, 1), hook=hook, poll_interval=0.001)
        workers.start(order(hook=HOOK))
        await until(lambda: len(seen) >= 3, "no counts after the hook")
        await workers.close()
        assert hooks == [(HOOK, 7.0)]
        assert seen[:3] == [
            DrainHookFinished(PREFIX, True, "exit 0"),
            ConnectionsCounted(PREFIX, 3),
            ConnectionsCounted(PREFIX, 1),
        ]

    async def test_counts_the_prefix_address_on_its_ports(self) -> None:
        seen: list[Input] = []
        counts = Counts(0)
        workers = DrainWorkers(seen.append, count=counts, poll_interval=0.001)
        workers.start(order())
        await until(lambda: seen, "no count")
        await workers.close()
        assert counts.calls[0] == ("10.255.0.1", (80, 443))
        assert seen[0] == ConnectionsCounted(PREFIX, 0)

    async def test_a_failed_count_is_logged_and_counting_goes_on(self) -> None:
        seen: list[Input] = []
        counts = Counts(OSError("netlink: ENOBUFS"), 2)
        workers = DrainWorkers(seen.append, count=counts, poll_interval=0.001)
        with capture_logs() as logs:
            workers.start(order())
            await until(lambda: seen, "counting stopped after a failure")
            await workers.close()
        assert seen[0] == ConnectionsCounted(PREFIX, 2)
        failed = [e for e in logs if e["event"] == "connection_count_failed"]
        assert failed[0]["prefix"] == PREFIX
        assert "ENOBUFS" in failed[0]["error"]

    async def test_one_worker_per_prefix_and_stop_ends_it(self) -> None:
        seen: list[Input] = []
        workers = DrainWorkers(seen.append, count=Counts(5), poll_interval=0.001)
        workers.start(order())
        workers.start(order())  # a second start of the same prefix is ignored
        workers.start(order("10.255.0.2/32"))
        assert workers.running == {PREFIX, "10.255.0.2/32"}
        await until(lambda: len(seen) >= 4, "no counts")
        workers.stop(PREFIX)
        workers.stop("10.9.9.9/32")  # not running: nothing to do
        assert workers.running == {"10.255.0.2/32"}
        await asyncio.sleep(0.01)
        seen.clear()
        await until(lambda: len(seen) >= 3, "the other worker stopped too")
        assert {item.prefix for item in seen if isinstance(item, ConnectionsCounted)} == {
            "10.255.0.2/32"
        }
        await workers.close()
        assert workers.running == frozenset()
        seen.clear()
        await asyncio.sleep(0.01)
        assert seen == []
