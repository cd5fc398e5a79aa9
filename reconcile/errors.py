"""Typed errors. Each carries its message and the exit code the CLI turns it into.

Library code raises these and never exits; only `executors.cli` maps them to an exit.
"""

from __future__ import annotations

#: Exit code for usage errors and fatal errors before any dataset was processed (as v3).
EXIT_FATAL = 255


class ReconcileError(Exception):
    """Base of every error the tool reports as a clean one-line message."""

    exit_code = EXIT_FATAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ReconcileError):
    """A bad command line value: names the value and what is allowed."""


class ScheduleError(UsageError):
    """An invalid thinning schedule."""


class ZfsError(ReconcileError):
    """A zfs command failed. `command` is the exact shell line, `stderr` what zfs said."""

    def __init__(self, message: str, command: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr


class GuardRefused(ZfsError):
    """The host's zfs-autobackup-guard refused the command (its exit code and refusal
    line: reconcile.guard_protocol); `reason` is what the refusal says, `read_only`: the
    guard is --read-only (its own marker says so)."""

    def __init__(
        self, message: str, command: str, stderr: str, reason: str, read_only: bool = False
    ) -> None:
        super().__init__(message, command, stderr)
        self.reason = reason
        self.read_only = read_only


class DatasetNotFound(ZfsError):
    """zfs says the dataset does not exist."""


class DatasetBusy(ZfsError):
    """zfs says the dataset or snapshot is busy (held, mounted, in use)."""


class PermissionDenied(ZfsError):
    """zfs says permission denied."""


class CommandNotFound(ReconcileError):
    """A program the tool needs is not installed on a host."""


class SshError(ReconcileError):
    """ssh could not connect or authenticate (exit code 255 from ssh)."""


class TransportError(SshError):
    """A transfer pipeline failed because its link did (an ssh process exited 255 while
    nothing refused): the only failure a transfer is retried for."""


class ObservationError(ReconcileError):
    """Observation returned something the tool cannot trust (a name it did not ask for)."""


class SelectionError(ReconcileError):
    """An invalid selection property value: the run stops before anything is changed."""


class PlanRefused(ReconcileError):
    """A plan breaks a safety invariant: a bug in the planner, never executed."""


#: a longer value is shown by its start and its length (one line, still recognisable)
_SHOWN = 120


def quoted(value: str) -> str:
    """A value as an error line shows it: quoted as repr quotes it, so a newline or any
    control character stays on the line; a very long value by its start and its length."""
    if len(value) <= _SHOWN:
        return repr(value)
    return f"{value[:_SHOWN]!r}... ({len(value)} characters)"
