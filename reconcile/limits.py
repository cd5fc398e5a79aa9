"""Argument-length limits: long lists of names are split into commands that fit.

On Linux one argument can hold at most 128 KiB, and a command sent over ssh is *one*
argument (the remote command line). Chunks stay well below that everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: bytes of arguments per command, including separators
ARG_BYTES = 100_000


def chunked(
    items: Iterable[str], budget: int = ARG_BYTES, separator: int = 1
) -> Iterator[list[str]]:
    """Split `items` into lists whose total length (plus separators) fits in `budget`."""
    chunk: list[str] = []
    size = 0
    for item in items:
        cost = len(item.encode()) + separator
        if chunk and size + cost > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += cost
    if chunk:
        yield chunk
