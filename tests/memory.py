"""Measuring what a structure holds, for the memory tests and benchmarks."""

from __future__ import annotations

import gc
import sys
import types

__all__ = ["deep_size"]


def deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root`` (classes, modules and functions,
    shared with the rest of the program, are not counted)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        stack.extend(gc.get_referents(item))
    return total
