"""The subcommands (modes), each declared once: the word that selects it, whether it may
change anything, the exit code of its errors, whether it takes a saved plan file, and
the module of executors.subcommands that holds its arguments and its run function.
Adding a subcommand is that module plus one line in `Mode`.

Read-only is the default: a mode writes only when its declaration says `writes=True`,
and every run of a read-only mode gets a runner that refuses to run anything that
writes (executors.runner.ReadOnlyRunner). Nothing names a mode to branch on it: the
parser (executors.options) and the entry point (executors.cli) read the declaration's
fields and call the mode's module.

    zfs-autobackup [options] BACKUP-NAME [TARGET-PATH]         classic: plan + apply, v3 log
    zfs-autobackup plan   [options] BACKUP-NAME [TARGET-PATH]  show the plan, change nothing
    zfs-autobackup apply  [options] BACKUP-NAME [TARGET-PATH]  plan, confirm, execute
    zfs-autobackup apply  FILE                                 execute a saved plan
    zfs-autobackup show   FILE                                 print a saved plan
    zfs-autobackup status [options] BACKUP-NAME [TARGET-PATH]  is every backup current
    zfs-autobackup restore [options] BACKUP-NAME TARGET-PATH DATASET   get a dataset back
    zfs-autobackup plan restore [options] BACKUP-NAME TARGET-PATH DATASET  show that plan
    zfs-autobackup verify [options] BACKUP-NAME TARGET-PATH    compare the backup's data
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

import attrs

from reconcile.errors import EXIT_FATAL

if TYPE_CHECKING:
    from executors.subcommands import Subcommand

#: plan/apply/show exit codes (Terraform's): 1 = error
EXIT_ERROR = 1
#: status exit codes (Nagios'): 3 = UNKNOWN, also for a bad command line
EXIT_UNKNOWN = 3


@attrs.frozen
class About:
    """What a mode is, as its declaration says."""

    #: its name in messages and in the plan of this module's docstring
    name: str
    #: the first argument(s) that select it ("plan restore": two words; None: the classic
    #: mode, selected by no word)
    word: Optional[str]
    #: may it change anything? (False: every command it runs is checked to be a read)
    writes: bool = False
    #: the exit code of a usage or fatal error
    error_exit: int = EXIT_ERROR
    #: an error exits with its own code (ReconcileError.exit_code: 255 for usage and
    #: fatal errors, as v3), not error_exit (the classic mode)
    own_error_codes: bool = False
    #: its argument is a saved plan file, not a backup name
    takes_file: bool = False
    #: its arguments name a dataset to restore (executors.restore)
    restores: bool = False
    #: its arguments and run function: "module:NAME", a Subcommand in a module of
    #: executors.subcommands (imported only when the mode runs)
    command: str = ""


class Mode(enum.Enum):
    """The registry: one line per subcommand (its module has the rest)."""

    CLASSIC = About(
        "classic",
        None,
        writes=True,
        error_exit=EXIT_FATAL,
        own_error_codes=True,
        command="classic_cmd:CLASSIC",
    )
    PLAN = About("plan", "plan", command="plan_cmd:PLAN")
    APPLY = About("apply", "apply", writes=True, command="apply_cmd:APPLY")
    STATUS = About("status", "status", error_exit=EXIT_UNKNOWN, command="status_cmd:STATUS")
    SHOW_FILE = About("show-file", "show", takes_file=True, command="show_cmd:SHOW_FILE")
    APPLY_FILE = About(
        "apply-file", "apply", writes=True, takes_file=True, command="apply_cmd:APPLY_FILE"
    )
    RESTORE = About("restore", "restore", writes=True, restores=True, command="restore_cmd:RESTORE")
    PLAN_RESTORE = About(
        "plan-restore", "plan restore", restores=True, command="restore_cmd:PLAN_RESTORE"
    )
    #: exit 0 verified, 1 a difference, 3 could not verify (also a usage error)
    VERIFY = About("verify", "verify", error_exit=EXIT_UNKNOWN, command="verify_cmd:VERIFY")

    @property
    def restores(self) -> bool:
        return self.about.restores

    @property
    def about(self) -> About:
        value: About = self.value
        return value

    @property
    def writes(self) -> bool:
        return self.about.writes

    @property
    def error_exit(self) -> int:
        return self.about.error_exit

    @property
    def command(self) -> Subcommand:
        """Its arguments and run function (imports its module)."""
        from executors import subcommands

        return subcommands.load(self.about.command)

    @property
    def prog(self) -> str:
        """The program's name in usage lines: `zfs-autobackup plan`."""
        word = self.about.word
        return "zfs-autobackup" if word is None else f"zfs-autobackup {word}"


def looks_like_a_plan_file(arg: str, alone: bool) -> bool:
    """`apply ARG`: ARG is a plan file when it looks like a path (a '/', which no backup
    name has, or a name ending in .plan), or when it is the only argument and something
    of that name exists here. Its errors then say what is wrong with the file."""
    return "/" in arg or arg.endswith(".plan") or (alone and os.path.lexists(arg))


def mode_of(argv: Sequence[str]) -> tuple[Mode, list[str]]:
    """The mode a command line selects, and the arguments after its word. A word that
    two modes share (`apply`) selects the one that takes a file when the first argument
    looks like a plan file."""
    words = {m: (m.about.word or "").split() for m in Mode}
    named = [m for m in Mode if words[m] and list(argv[: len(words[m])]) == words[m]]
    if not named:
        return Mode.CLASSIC, list(argv)
    longest = max(len(words[m]) for m in named)
    named = [m for m in named if len(words[m]) == longest]
    rest = list(argv[longest:])
    by_name = [m for m in named if not m.about.takes_file]
    by_file = [m for m in named if m.about.takes_file]
    if by_file and (
        not by_name or (rest and looks_like_a_plan_file(rest[0], alone=len(rest) == 1))
    ):
        return by_file[0], rest
    return by_name[0], rest
