"""The command probe, running real programs and checking what they leave behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from anycast_announcer.checks.command import probe
from anycast_announcer.config import CommandCheck
from tests.unit.checks.probe_helpers import eventually, live_processes, open_fds


def command(*argv: str, cwd: str | None = None, env: dict[str, str] | None = None) -> CommandCheck:
    return CommandCheck(type="command", argv=list(argv), cwd=cwd, env=env or {})


def tagged(*argv: str) -> tuple[CommandCheck, str]:
    """A check whose processes (and their children) carry a unique environment token."""
    token = f"PROBE_TEST_TOKEN={uuid.uuid4().hex}"
    name, value = token.split("=")
    return command(*argv, env={name: value}), token


async def gone(token: str) -> bool:
    """Whether every process carrying ``token`` is gone within two seconds."""
    return await eventually(lambda: not live_processes(env_token=token))


class TestCommandProbe:
    async def test_exit_zero_is_healthy(self) -> None:
        """`true` is healthy."""
        result = await probe(command("true"), 2.0)
        assert (result.ok, result.reason) == (True, "exit status 0")

    async def test_exit_non_zero_is_a_failure(self) -> None:
        """`false` fails with its exit status."""
        result = await probe(command("false"), 2.0)
        assert (result.ok, result.reason) == (False, "exit status 1")

    async def test_reason_carries_the_last_stderr_line(self) -> None:
        """The last line the command wrote to stderr explains the failure."""
        check = command("sh", "-c", "echo noise >&2; echo boom >&2; exit 3")
        result = await probe(check, 2.0)
        assert (result.ok, result.reason) == (False, "exit status 3: boom")

    async def test_long_stderr_line_is_shortened(self) -> None:
        """A huge last line is cut to about 200 characters."""
        check = command("sh", "-c", "printf 'y%.0s' $(seq 1000) >&2; exit 1")
        result = await probe(check, 2.0)
        assert result.reason.startswith("exit status 1: yyyy")
        assert len(result.reason) <= len("exit status 1: ") + 200

    async def test_lots_of_stderr_does_not_stall_the_command(self) -> None:
        """A command writing far more than a pipe holds still finishes; the tail is kept."""
        script = "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo last >&2; exit 1"
        result = await probe(command("sh", "-c", script), 5.0)
        assert (result.ok, result.reason) == (False, "exit status 1: last")

    async def test_killed_by_signal(self) -> None:
        """Death by a signal is named as such."""
        result = await probe(command("sh", "-c", "kill -9 $$"), 2.0)
        assert (result.ok, result.reason) == (False, "killed by signal 9")

    async def test_missing_program(self) -> None:
        """A program that does not exist cannot run, and the reason says why."""
        result = await probe(command("/nonexistent/health-check"), 2.0)
        assert (result.ok, result.reason) == (False, "cannot run: No such file or directory")

    async def test_missing_working_directory_is_named(self, tmp_path: Path) -> None:
        """A missing cwd is told apart from a missing program."""
        missing = tmp_path / "gone"
        result = await probe(command("true", cwd=str(missing)), 2.0)
        assert (result.ok, result.reason) == (
            False,
            f"cannot run: No such file or directory (cwd {missing})",
        )

    async def test_cwd_and_env_are_applied(self, tmp_path: Path) -> None:
        """cwd is the working directory; env adds to (not replaces) the environment."""
        check = command(
            "sh",
            "-c",
            'test "$(pwd)" = "$WANT_DIR" && test -n "$PATH" || { echo "in $(pwd)" >&2; exit 1; }',
            cwd=str(tmp_path),
            env={"WANT_DIR": str(tmp_path)},
        )
        result = await probe(check, 2.0)
        assert result.ok, result.reason

    async def test_timeout_kills_the_command_promptly(self) -> None:
        """A hanging command ends at the timeout and is killed."""
        check, token = tagged("sleep", "10")
        before = open_fds()
        started = time.monotonic()
        result = await probe(check, 0.3)
        assert (result.ok, result.reason) == (False, "timeout after 0.3s")
        assert time.monotonic() - started < 1.0
        assert await gone(token)
        assert open_fds() <= before

    async def test_timeout_kills_the_whole_process_group(self, tmp_path: Path) -> None:
        """Children the command forked are killed with it, not left to run on."""
        pid_file = tmp_path / "pgid"
        check = command("sh", "-c", f"echo $$ > {pid_file}; sleep 30 & sleep 30")
        result = await probe(check, 0.3)
        assert result.reason == "timeout after 0.3s"
        pgid = int(pid_file.read_text())
        assert await eventually(lambda: not live_processes(pgid=pgid)), live_processes(pgid=pgid)

    async def test_children_left_behind_after_a_clean_exit_are_killed(self) -> None:
        """A check that forks a helper and exits 0 is healthy, and the helper is killed."""
        check, token = tagged("sh", "-c", "sleep 30 & exit 0")
        result = await probe(check, 2.0)
        assert (result.ok, result.reason) == (True, "exit status 0")
        assert await gone(token)

    async def test_cancellation_kills_the_command(self) -> None:
        """Cancelling a running probe raises CancelledError and leaves no process behind."""
        check, token = tagged("sh", "-c", "sleep 30 & sleep 30")
        task = asyncio.create_task(probe(check, 10.0))
        started = await eventually(lambda: len(live_processes(env_token=token)) >= 2)
        assert started, "the command never started its two sleeps"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await gone(token)
