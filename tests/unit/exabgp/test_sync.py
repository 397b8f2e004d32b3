"""Route sync as a state machine: acknowledgements paired with commands, across flaps.

Unit tests pin each rule; a hypothesis state machine then plays a model ExaBGP (its RIB
per session, its command queue, and the one ordered stream of answers and session
events it writes back) against ``RouteSync`` in every interleaving, and checks that what
the sync believes acknowledged is really held, and that a quiet, synced ExaBGP holds
exactly the desired routes.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from anycast_announcer.exabgp.commands import Command
from anycast_announcer.exabgp.sync import AckResult, ProtocolError, RouteSync, SessionChange
from anycast_announcer.routes import Route, RouteKey

P1, P2 = "10.0.1.1", "10.0.2.1"
A, B = "10.255.0.1/32", "10.255.0.2/32"
POISON = 666
"""A MED our model ExaBGP refuses, standing in for a line ExaBGP cannot parse."""


def route(peer: str, prefix: str, med: int | None = None) -> Route:
    return Route(peer=peer, prefix=prefix, med=med)


def connected(*peers_up: str) -> RouteSync:
    sync = RouteSync()
    sync.on_connected()
    for peer in peers_up:
        sync.on_neighbor(peer, "up", "")
    return sync


class TestRules:
    def test_sends_the_difference_and_records_the_answers(self) -> None:
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        (command,) = sync.commands_to_send()
        assert command.line.startswith(f"neighbor {P1} announce route {A}")
        assert not sync.synced
        assert sync.on_ack(True).result is AckResult.ANNOUNCED
        assert sync.acknowledged == {RouteKey(P1, A): route(P1, A)}
        assert sync.commands_to_send() == []
        assert sync.synced

    def test_one_batch_in_flight_at_a_time(self) -> None:
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        assert len(sync.commands_to_send()) == 1
        sync.set_desired({RouteKey(P1, A): route(P1, A), RouteKey(P1, B): route(P1, B)})
        assert sync.commands_to_send() == []
        sync.on_ack(True)
        assert [c.key for c in sync.commands_to_send()] == [RouteKey(P1, B)]

    def test_an_announcement_answered_while_its_session_is_down_does_not_count(self) -> None:
        """The session went down before ExaBGP executed it: nothing went on the wire."""
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        sync.commands_to_send()
        assert sync.on_neighbor(P1, "down", "hold timer expired") == SessionChange(
            P1, False, "hold timer expired"
        )
        assert sync.on_ack(True).result is AckResult.SESSION_DOWN
        assert sync.acknowledged == {}
        assert sync.on_neighbor(P1, "up", "") == SessionChange(P1, True, "up")
        assert [c.key for c in sync.commands_to_send()] == [RouteKey(P1, A)]

    def test_an_answer_after_the_session_came_back_counts(self) -> None:
        """Executed on the new session: forgetting it would leak a route nothing withdraws."""
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        sync.commands_to_send()
        sync.on_neighbor(P1, "down", "")
        sync.on_neighbor(P1, "up", "")
        assert sync.on_ack(True).result is AckResult.ANNOUNCED
        sync.set_desired({})
        assert [c.line.split()[2] for c in sync.commands_to_send()] == ["withdraw"]

    def test_a_flap_after_the_answer_forgets_the_route(self) -> None:
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        sync.commands_to_send()
        sync.on_ack(True)
        sync.on_neighbor(P1, "down", "")
        assert sync.acknowledged == {}

    def test_a_flap_of_another_session_leaves_the_answer_valid(self) -> None:
        sync = connected(P1, P2)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        sync.commands_to_send()
        sync.on_neighbor(P2, "down", "")
        assert sync.on_ack(True).result is AckResult.ANNOUNCED

    def test_nothing_is_announced_into_a_session_that_is_down(self) -> None:
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A), RouteKey(P2, A): route(P2, A)})
        assert [c.key.peer for c in sync.commands_to_send()] == [P1]

    def test_a_refused_announcement_is_not_retried_until_it_changes(self) -> None:
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A, POISON)})
        sync.commands_to_send()
        assert sync.on_ack(False).result is AckResult.REJECTED
        assert sync.commands_to_send() == []
        assert sync.synced
        sync.set_desired({RouteKey(P1, A): route(P1, A, 1)})
        assert len(sync.commands_to_send()) == 1

    def test_an_answer_with_nothing_in_flight_is_a_protocol_error(self) -> None:
        """A command split in two by a newline answers twice: resynchronise, never drift."""
        sync = connected(P1)
        with pytest.raises(ProtocolError, match="unexpected done"):
            sync.on_ack(True)

    def test_a_restart_mid_batch_starts_from_nothing(self) -> None:
        sync = connected(P1)
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        sync.commands_to_send()
        assert sync.on_disconnected() == [SessionChange(P1, False, "exabgp stopped")]
        assert (sync.in_flight, sync.acknowledged, sync.sessions_up) == (0, {}, frozenset())
        assert not sync.synced  # routes wanted, no ExaBGP to hold them
        sync.on_connected()
        assert sync.commands_to_send() == []  # the session must come up first
        sync.on_neighbor(P1, "up", "")
        assert len(sync.commands_to_send()) == 1

    def test_shutdown_takes_every_session_down(self) -> None:
        sync = connected(P1, P2)
        changes = sync.on_shutdown()
        assert {(c.peer, c.up) for c in changes} == {(P1, False), (P2, False)}
        assert not sync.connected

    def test_without_exabgp_only_an_empty_set_is_in_sync(self) -> None:
        sync = RouteSync()
        assert sync.synced
        sync.set_desired({RouteKey(P1, A): route(P1, A)})
        assert not sync.synced


class ExabgpModel(RuleBasedStateMachine):
    """A model ExaBGP and RouteSync, connected by a command queue and an event stream."""

    def __init__(self) -> None:
        super().__init__()
        self.sync = RouteSync()
        self._restart()

    def _restart(self) -> None:
        self.sync.on_disconnected()
        self.sync.on_connected()
        self.sessions = {P1: False, P2: False}
        self.rib: dict[RouteKey, Route] = {}
        self.queue: deque[Command] = deque()
        self.stream: deque[tuple[str, object]] = deque()
        self.unanswered: deque[Command] = deque()
        """Sent, and the sidecar has not read the answer yet."""

    @rule(
        wanted=st.dictionaries(
            st.tuples(st.sampled_from([P1, P2]), st.sampled_from([A, B])),
            st.sampled_from([None, 1, 2, POISON]),
            max_size=4,
        )
    )
    def set_desired(self, wanted: dict[tuple[str, str], int | None]) -> None:
        self.sync.set_desired({RouteKey(p, x): route(p, x, med) for (p, x), med in wanted.items()})

    @rule()
    def sidecar_sends(self) -> None:
        batch = self.sync.commands_to_send()
        self.queue.extend(batch)
        self.unanswered.extend(batch)

    @precondition(lambda self: bool(self.queue))
    @rule()
    def exabgp_processes_a_command(self) -> None:
        command = self.queue.popleft()
        ok = command.route is None or command.route.med != POISON
        if ok and command.route is None:
            self.rib.pop(command.key, None)
        elif ok and command.route is not None and self.sessions[command.key.peer]:
            self.rib[command.key] = command.route
        self.stream.append(("ack", ok))

    @rule(peer=st.sampled_from([P1, P2]), up=st.booleans())
    def session_changes(self, peer: str, up: bool) -> None:
        # A session that goes down or comes up carries nothing of ours (no adj-rib-out).
        self.sessions[peer] = up
        for key in [key for key in self.rib if key.peer == peer]:
            del self.rib[key]
        self.stream.append(("neighbor", (peer, "up" if up else "down")))

    @precondition(lambda self: bool(self.stream))
    @rule()
    def sidecar_reads(self) -> None:
        kind, value = self.stream.popleft()
        if kind == "ack":
            assert isinstance(value, bool)
            self.unanswered.popleft()
            self.sync.on_ack(value)
        else:
            assert isinstance(value, tuple)
            self.sync.on_neighbor(value[0], value[1], "")

    @rule()
    def everything_settles(self) -> None:
        """Send, process and read until nothing moves (shortens the interesting paths)."""
        while True:
            self.sidecar_sends()
            if not self.queue and not self.stream:
                return
            while self.queue:
                self.exabgp_processes_a_command()
            while self.stream:
                self.sidecar_reads()

    @rule()
    def exabgp_restarts(self) -> None:
        self._restart()

    @invariant()
    def what_sync_believes_acknowledged_is_really_held(self) -> None:
        # Except what the sidecar cannot know yet: session events it has not read, and
        # commands whose answer it has not read.
        unread = {value[0] for kind, value in self.stream if kind == "neighbor"}  # type: ignore[index]
        moving = {command.key for command in self.unanswered}
        for key, held in self.sync.acknowledged.items():
            if key.peer not in unread and key not in moving:
                assert self.rib.get(key) == held, key

    @invariant()
    def every_command_in_flight_is_queued_or_answered_on_the_stream(self) -> None:
        answers = sum(1 for kind, _ in self.stream if kind == "ack")
        assert self.sync.in_flight == len(self.queue) + answers

    @invariant()
    def quiet_and_synced_means_exabgp_holds_the_desired_routes(self) -> None:
        if self.queue or self.stream or not self.sync.synced:
            return
        up = {peer for peer, is_up in self.sessions.items() if is_up}
        wanted = {key: value for key, value in self.sync.desired.items() if key.peer in up}
        # A refused replacement leaves the route ExaBGP held before (the best it can do).
        for key, value in list(wanted.items()):
            if value.med == POISON:
                previous = self.sync.acknowledged.get(key)
                if previous is None:
                    del wanted[key]
                else:
                    wanted[key] = previous
        assert self.rib == wanted


ExabgpModel.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestExabgpModel = ExabgpModel.TestCase
