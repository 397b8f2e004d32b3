"""The shell's producers: asyncio tasks that turn the outside world into core inputs.

Each worker owns its tasks and hands what it observes to a ``Submit`` callable (the
supervisor's input queue); none of them decides anything.
"""

from collections.abc import Callable

from anycast_announcer.core.inputs import Input

Submit = Callable[[Input], None]
"""Where workers put what they observed (the supervisor's queue)."""

__all__ = ["Submit"]
