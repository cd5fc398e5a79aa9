"""`assert_never` for every Python this project supports (typing has it from 3.11 on).

Every dispatch over a closed set (modes, sides, actions, commands) ends in
`assert_never(value)`: mypy then names each place a new member must be handled, because
only a value of no remaining type may be passed here. Standard library only (the guard
may use it).
"""

from __future__ import annotations

from typing import NoReturn


def assert_never(value: NoReturn) -> NoReturn:
    raise AssertionError(f"unhandled value: {value!r}")
