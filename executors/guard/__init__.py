"""The remote guard, `zfs-autobackup-guard`: a second program, pinned to an ssh key on a
backup source or target, that runs only the commands zfs-reconcile sends, and judges
what a received stream and a resume token will do before zfs does it.

Its own room: standard library only (it is installed where the project's dependencies
are not; an import-linter contract holds it and everything it imports to that). It
shares with the tool only the vocabulary in reconcile (`zfs_names`, `selection_values`,
`scripts`, `formats`, `filters`, `guard_protocol`: each written once, for both).

    program.py      the command: parse SSH_ORIGINAL_COMMAND, judge, run, log refusals
    rules.py        what a command line may do (pure)
    words.py        the language a command line is written in (pure)
    stream.py       what a received stream may do, record by record (pure)
    send_stream.py  the records of a zfs send stream (pure)
    receive.py      the pipes between the filters, the guard's reading, and zfs recv
"""

from __future__ import annotations

from executors.guard.program import main

__all__ = ["main"]
