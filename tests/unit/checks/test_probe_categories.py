"""Every probe result carries a category, and the sidecar's own shortage is never the service's.

The fd-exhaustion tests are real: the soft RLIMIT_NOFILE of this process is lowered and
every free descriptor below it taken, then a probe runs. A ``socket()``, ``pipe()`` or
``fork`` that fails with EMFILE must come back as ``ProbeCategory.SIDECAR``; it used to
come back as a failed service, and the route was withdrawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web

from anycast_announcer.checks import Prober, ProbeResult
from anycast_announcer.checks import http as http_probe
from anycast_announcer.checks._result import (
    SIDECAR_ERRNOS,
    ProbeCategory,
    os_error_category,
    os_error_reason,
)
from anycast_announcer.checks.regex import RegexError, RegexMatcher
from anycast_announcer.config import CommandCheck, HttpCheck, TcpCheck
from anycast_announcer.metrics import REASON_CATEGORIES
from tests.unit.checks.probe_helpers import LOOPBACK, live_processes

CATASTROPHIC = r"^(a+)+$"
"""Backtracks for 2**n steps on n a's followed by a non-matching character."""
EXPLOSIVE_BODY = "a" * 40 + "!"


def http(url: str, **fields: Any) -> HttpCheck:
    return HttpCheck.model_validate({"type": "http", "url": url, **fields})


@contextlib.contextmanager
def descriptors_exhausted(spare: int = 0) -> Iterator[None]:
    """Every descriptor below a lowered soft limit in use, except ``spare`` of them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 32, hard))
    held: list[int] = []
    try:
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as error:
                if error.errno != errno.EMFILE:
                    raise
                break
        for _ in range(spare):
            os.close(held.pop())
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
async def explosive_base() -> AsyncIterator[str]:
    """A server whose body makes CATASTROPHIC backtrack for hours."""

    async def body(request: web.Request) -> web.Response:
        return web.Response(text=EXPLOSIVE_BODY)

    async def fine(request: web.Request) -> web.Response:
        return web.Response(text="aaaa")

    app = web.Application()
    app.router.add_get("/explosive", body)
    app.router.add_get("/fine", fine)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    try:
        yield f"http://{LOOPBACK}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def test_categories_are_the_metrics_labels_plus_ok_and_sidecar() -> None:
    """metrics will label failures by category: the two lists must stay one."""
    values = {category.value for category in ProbeCategory}
    assert values == {*REASON_CATEGORIES, "ok", "sidecar"}


def test_ok_and_category_agree() -> None:
    assert ProbeResult(True, 0.0, "connected").category is ProbeCategory.OK
    assert ProbeResult(False, 0.0, "x").category is ProbeCategory.OTHER
    with pytest.raises(ValueError, match="contradicts"):
        ProbeResult(False, 0.0, "x", ProbeCategory.OK)
    with pytest.raises(ValueError, match="contradicts"):
        ProbeResult(True, 0.0, "x", ProbeCategory.TIMEOUT)
    assert ProbeResult(False, 0.0, "x", ProbeCategory.SIDECAR).sidecar_fault


@pytest.mark.parametrize("code", sorted(SIDECAR_ERRNOS))
def test_resource_errnos_are_the_sidecars(code: int) -> None:
    error = OSError(code, os.strerror(code))
    assert os_error_category(error) is ProbeCategory.SIDECAR
    assert os_error_reason(error).startswith("sidecar cannot probe: ")
    assert f"({errno.errorcode[code]})" in os_error_reason(error)


class TestCategoriesOfRealOutcomes:
    async def test_tcp(self, accepting_port: int, closed_port: int) -> None:
        async with Prober() as prober:
            ok = await prober.probe(TcpCheck(type="tcp", host=LOOPBACK, port=accepting_port), 1)
            refused = await prober.probe(TcpCheck(type="tcp", host=LOOPBACK, port=closed_port), 1)
            unresolvable = await prober.probe(
                TcpCheck(type="tcp", host="no-such-host.invalid", port=80), 5
            )
        assert (ok.category, refused.category) == (ProbeCategory.OK, ProbeCategory.REFUSED)
        assert unresolvable.category is ProbeCategory.UNREACHABLE

    async def test_tcp_timeout(self, unresponsive_port: int) -> None:
        async with Prober() as prober:
            result = await prober.probe(
                TcpCheck(type="tcp", host=LOOPBACK, port=unresponsive_port), 0.2
            )
        assert result.category is ProbeCategory.TIMEOUT

    async def test_http(self, http_base: str, https_base: str) -> None:
        async with Prober() as prober:
            status = await prober.probe(http(f"{http_base}/unavailable"), 2)
            body = await prober.probe(http(f"{http_base}/ok", body_regex="absent"), 2)
            matched = await prober.probe(http(f"{http_base}/ok", body_regex="all good"), 2)
            tls = await prober.probe(
                HttpCheck.model_validate({"type": "https", "url": f"{https_base}/ok"}), 2
            )
        assert status.category is ProbeCategory.HTTP_STATUS
        assert body.category is ProbeCategory.BODY_MISMATCH
        assert matched.category is ProbeCategory.OK
        assert tls.category is ProbeCategory.TLS

    async def test_command(self) -> None:
        async with Prober() as prober:
            exit_status = await prober.probe(CommandCheck(type="command", argv=["false"]), 2)
            killed = await prober.probe(
                CommandCheck(type="command", argv=["sh", "-c", "kill -9 $$"]), 2
            )
            missing = await prober.probe(CommandCheck(type="command", argv=["/no/such"]), 2)
            slow = await prober.probe(CommandCheck(type="command", argv=["sleep", "5"]), 0.2)
        assert exit_status.category is ProbeCategory.EXIT_STATUS
        assert killed.category is ProbeCategory.SIGNAL
        assert missing.category is ProbeCategory.CANNOT_RUN
        assert slow.category is ProbeCategory.TIMEOUT


class TestOutOfDescriptors:
    """EMFILE in the sidecar is the sidecar's fault, never the service's."""

    async def test_tcp_socket_fails(self, accepting_port: int) -> None:
        check = TcpCheck(type="tcp", host=LOOPBACK, port=accepting_port)
        async with Prober() as prober:
            with descriptors_exhausted():
                result = await prober.probe(check, 1)
            after = await prober.probe(check, 1)
        assert result.category is ProbeCategory.SIDECAR, result
        assert "EMFILE" in result.reason
        assert after.ok

    async def test_command_pipe_fails(self) -> None:
        async with Prober() as prober:
            with descriptors_exhausted():
                result = await prober.probe(CommandCheck(type="command", argv=["true"]), 1)
        assert result.category is ProbeCategory.SIDECAR, result

    async def test_command_spawn_fails(self) -> None:
        """The pipe is made, but starting the process needs descriptors that are gone."""
        async with Prober() as prober:
            with descriptors_exhausted(spare=2):
                result = await prober.probe(CommandCheck(type="command", argv=["true"]), 1)
        assert result.category is ProbeCategory.SIDECAR, result
        assert result.reason.startswith("sidecar cannot probe")

    async def test_http_connect_fails(self, http_base: str) -> None:
        async with Prober() as prober:
            with descriptors_exhausted():
                result = await prober.probe(http(f"{http_base}/ok"), 1)
            after = await prober.probe(http(f"{http_base}/ok"), 1)
        assert result.category is ProbeCategory.SIDECAR, result
        assert after.ok


class TestBodyRegexOffTheLoop:
    async def test_catastrophic_pattern_times_out_and_the_loop_keeps_running(
        self, explosive_base: str
    ) -> None:
        """A pattern that would backtrack for hours: the probe times out in body_regex
        while another coroutine keeps running, and the next probe works."""
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        check = http(f"{explosive_base}/explosive", body_regex=CATASTROPHIC)
        async with Prober() as prober:
            await prober.probe(http(f"{explosive_base}/fine", body_regex=CATASTROPHIC), 5)
            counting = asyncio.get_running_loop().create_task(ticker())
            result = await prober.probe(check, 1.0)
            counting.cancel()
            after = await prober.probe(http(f"{explosive_base}/fine", body_regex=CATASTROPHIC), 5)
        assert result.category is ProbeCategory.TIMEOUT
        assert result.reason == "timeout after 1s in body_regex"
        # On the loop, the search would have blocked it for the whole second: no tick.
        assert ticks >= 10, f"the event loop was blocked ({ticks} ticks in a 1 s probe)"
        assert after.ok, after

    async def test_killed_worker_is_gone(self) -> None:
        matcher = RegexMatcher(workers=1)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await matcher.search(CATASTROPHIC, EXPLOSIVE_BODY)
            assert await matcher.search("b", "abc")
        finally:
            await matcher.aclose()
        children = _children_running("_regex_child.py")
        assert children == [], children

    async def test_bad_pattern_is_a_regex_error(self) -> None:
        matcher = RegexMatcher(workers=1)
        try:
            with pytest.raises(RegexError, match="missing"):
                await matcher.search("(", "x")
            assert not await matcher.search("y", "x")
        finally:
            await matcher.aclose()

    async def test_busy_workers_make_a_sidecar_result(self, explosive_base: str) -> None:
        """All workers stuck: a probe that cannot even start its search is our fault."""
        matcher = RegexMatcher(workers=1)
        try:
            stuck = asyncio.get_running_loop().create_task(
                matcher.search(CATASTROPHIC, EXPLOSIVE_BODY)
            )
            # The stuck search holds the only worker (not a guess that 0.2 s sufficed).
            deadline = asyncio.get_running_loop().time() + 30
            while matcher.busy == 0:
                assert asyncio.get_running_loop().time() < deadline, "the worker never got busy"
                assert not stuck.done(), stuck
                await asyncio.sleep(0.01)
            result = await http_probe.probe(
                http(f"{explosive_base}/fine", body_regex="a"), 0.5, matcher=matcher
            )
            stuck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stuck
        finally:
            await matcher.aclose()
        assert result.category is ProbeCategory.SIDECAR, result
        assert "no regex worker" in result.reason


def _children_running(marker: str) -> list[int]:
    found: list[int] = []
    for pid in live_processes(pgid=os.getpgrp()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker.encode() in cmdline.read():
                    found.append(pid)
        except OSError:
            continue
    return found
