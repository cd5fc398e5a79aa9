"""Planning at scale without the cyclic garbage collector's pauses.

Planning allocates millions of small objects (graph nodes, links, fates) and frees
almost all of them by reference counting; none of its values form cycles that need the
collector. Left on, the collector walks the whole, growing heap again and again while
they are made: at a million snapshots a side that was two thirds of building the graph.
`paused` turns it off for one call and back on (if it was on) when the call returns; it
changes no result.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def paused(function: Callable[P, R]) -> Callable[P, R]:
    """`function`, run with the cyclic garbage collector off."""

    @wraps(function)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return call
