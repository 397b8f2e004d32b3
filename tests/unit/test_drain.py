"""The drain state machine: hook, connections, graceful shutdown, withdrawn."""

from __future__ import annotations

from anycast_announcer.config import DrainConfig
from anycast_announcer.drain import DrainOrigin, DrainPhase, PrefixDrain

OPERATOR = DrainOrigin.OPERATOR

WITH_HOOK = DrainConfig.model_validate(
    {
        "hook": {"type": "command", "argv": ["true"]},
        "connection_timeout": 30,
        "graceful_shutdown_hold": 5,
        "connection_threshold": 0,
    }
)


class TestPrefixDrain:
    def test_full_sequence_keeps_the_route_until_sessions_are_gone(self) -> None:
        """hook -> waiting (announced as before) -> graceful shutdown -> withdrawn."""
        drain = PrefixDrain(WITH_HOOK)
        assert drain.start(0.0, "maintenance", OPERATOR, 0.0)
        assert drain.phase is DrainPhase.HOOK
        assert drain.announce_normally
        drain.hook_finished(1.0)
        assert drain.phase is DrainPhase.WAITING_CONNECTIONS  # type: ignore[comparison-overlap]  # mypy narrowed phase to HOOK above; hook_finished changed it
        assert drain.announce_normally
        drain.connections_counted(2.0, 3)
        assert drain.phase is DrainPhase.WAITING_CONNECTIONS
        assert drain.connections == 3
        drain.connections_counted(3.0, 0)
        assert drain.phase is DrainPhase.GRACEFUL_SHUTDOWN
        assert drain.graceful_shutdown
        assert drain.deadline() == 8.0
        drain.tick(7.9)
        assert drain.phase is DrainPhase.GRACEFUL_SHUTDOWN
        drain.tick(8.0)
        assert drain.phase is DrainPhase.WITHDRAWN
        assert not drain.announce_normally
        assert not drain.graceful_shutdown
        assert drain.deadline() is None

    def test_without_hook_starts_waiting(self) -> None:
        drain = PrefixDrain(DrainConfig())
        drain.start(0.0, "x", OPERATOR, 0.0)
        assert drain.phase is DrainPhase.WAITING_CONNECTIONS

    def test_connection_timeout_moves_on(self) -> None:
        """Sessions that never end do not block the drain forever."""
        drain = PrefixDrain(DrainConfig(connection_timeout=10, graceful_shutdown_hold=5))
        drain.start(0.0, "x", OPERATOR, 0.0)
        drain.connections_counted(1.0, 50)
        drain.tick(10.0)
        assert drain.phase is DrainPhase.GRACEFUL_SHUTDOWN

    def test_late_tick_passes_both_deadlines(self) -> None:
        drain = PrefixDrain(DrainConfig(connection_timeout=10, graceful_shutdown_hold=0))
        drain.start(0.0, "x", OPERATOR, 0.0)
        drain.tick(100.0)
        assert drain.phase is DrainPhase.WITHDRAWN

    def test_threshold(self) -> None:
        drain = PrefixDrain(DrainConfig(connection_threshold=5))
        drain.start(0.0, "x", OPERATOR, 0.0)
        drain.connections_counted(1.0, 5)
        assert drain.phase is DrainPhase.GRACEFUL_SHUTDOWN

    def test_undrain_from_any_phase(self) -> None:
        drain = PrefixDrain(WITH_HOOK)
        drain.start(0.0, "x", OPERATOR, 0.0)
        assert drain.undrain()
        assert drain.phase is DrainPhase.NONE
        assert drain.reason is None
        assert not drain.undrain()

    def test_second_start_changes_nothing(self) -> None:
        drain = PrefixDrain(WITH_HOOK)
        drain.start(0.0, "first", OPERATOR, 0.0)
        assert not drain.start(1.0, "second", OPERATOR, 1.0)
        assert drain.reason == "first"

    def test_restored_drain_is_withdrawn_at_once(self) -> None:
        """After a restart a persisted drain does not announce, not even briefly."""
        drain = PrefixDrain(WITH_HOOK)
        drain.restore_withdrawn(5.0, "maintenance", started_at=1.0)
        assert drain.phase is DrainPhase.WITHDRAWN
        assert drain.reason == "maintenance"

    def test_stale_inputs_are_ignored(self) -> None:
        drain = PrefixDrain(WITH_HOOK)
        drain.hook_finished(0.0)
        drain.connections_counted(0.0, 0)
        assert drain.phase is DrainPhase.NONE


class TestOrigin:
    def test_origin_is_kept_and_decides_persistence(self) -> None:
        """Where a drain came from is data; only the drain file's are not persisted."""
        for origin, persistent in [
            (DrainOrigin.OPERATOR, True),
            (DrainOrigin.DRAIN_FILE, False),
        ]:
            drain = PrefixDrain(DrainConfig())
            drain.start(0.0, "x", origin, 100.0)
            assert (drain.origin, drain.persistent, drain.started_at) == (origin, persistent, 100.0)
            drain.undrain()
            assert (drain.origin, drain.persistent) == (None, False)

    def test_restored_drain_is_persistent(self) -> None:
        drain = PrefixDrain(DrainConfig())
        drain.restore_withdrawn(5.0, "maintenance", 42.0)
        assert (drain.origin, drain.persistent, drain.phase) == (
            DrainOrigin.RESTORED,
            True,
            DrainPhase.WITHDRAWN,
        )
