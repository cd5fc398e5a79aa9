"""What the tool and its remote guard agree on: how a refusal looks (its exit code and
its one line on stderr) and how the tool reads it back.

Standard library only: the guard (executors.guard) prints these lines, and the tool
(reconcile.zfs_text) reads them as a GuardRefused.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

#: the exit code of a refusal (as a shell's "cannot execute")
EXIT_REFUSED = 126
#: a refused command is shown cut to this many characters
SHOWN = 300
#: the guard's name, which starts each refusal line on stderr
PROG = "zfs-autobackup-guard: "
#: how a refusal line goes on after PROG; with EXIT_REFUSED, what tells the tool that the
#: guard refused (executors see a GuardRefused: reconcile.zfs_text)
REFUSED = "refused: "
#: the same, for a refusal because the guard is --read-only (the tool then advises
#: --read-only-source): a marker of its own, as a reason may quote any dataset name
READ_ONLY_REFUSED = "refused (read-only): "
#: what every refusal by a --read-only guard says
READ_ONLY = "the guard is --read-only"


class Refusal(NamedTuple):
    """A refusal as the tool reads it from a failed command."""

    reason: str
    read_only: bool


def refusal(reason: str, line: str, prog: str = PROG, *, read_only: bool = False) -> str:
    """The one line a refusal prints (the command cut and escaped: it stays one line);
    `prog=""` for syslog, which names the program itself."""
    shown = repr(line[:SHOWN]) + ("..." if len(line) > SHOWN else "")
    marker = READ_ONLY_REFUSED if read_only else REFUSED
    return f"{prog}{marker}{reason}: {shown}"


def refused(returncode: int, stderr: str) -> Optional[Refusal]:
    """A guard's refusal, read from a failed command: its exit code is EXIT_REFUSED and a
    line of its stderr starts with a refusal marker (None: the guard did not refuse it)."""
    if returncode != EXIT_REFUSED:
        return None
    for line in stderr.splitlines():
        for marker in (REFUSED, READ_ONLY_REFUSED):
            if line.startswith(PROG + marker):
                return Refusal(line[len(PROG + marker) :], marker == READ_ONLY_REFUSED)
    return None
