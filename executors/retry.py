"""A transfer whose link broke is repeated in the same run (--retries, --retry-delay).

Only a TransportError is retried: the pipeline's first failure was an ssh process that
lost its link while nothing refused (reconcile.transport). A refusal by zfs (no space,
an incompatible stream, permission denied, a guard's refusal, a damaged stream that no
broken link explains) is never repeated: repeating it would only fail again, or worse.

Before each retry it waits (`delay`, doubled each time: 10, 20, 40 s), then reads the
target's receive_resume_token (one `zfs get`, through the runner):

- a token: the step resumes from it (`zfs send -t TOKEN | ... | zfs recv -s ...`, the
  step's own flags and pipes; planner.compile.resumed);
- no token: nothing of the stream stayed on the target (zfs keeps a cut receive only as
  resumable state), so the same command runs again from the start;
- a token after a stream of several snapshots (-I) was cut: its token resumes only the
  snapshot that was cut, so the step is not repeated; the next run resumes it.

Nothing is ever destroyed or aborted to retry. The sleep is passed in (tests never wait).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional

import attrs

from executors.console import Console
from planner.compile import Command, Step, resumed
from reconcile.errors import DatasetNotFound, ReconcileError, TransportError

#: runs a step's pipeline (these commands); raises ReconcileError when it failed
RunCommands = Callable[[Sequence[Command]], None]
#: reads a token (the step's `zfs get receive_resume_token`): its value, None for none;
#: raises ReconcileError when it could not be read
ReadToken = Callable[[Command], Optional[str]]


@attrs.frozen
class Policy:
    retries: int
    #: seconds before the first retry
    delay: float

    def wait(self, retry: int) -> float:
        """Seconds before retry number `retry` (1, 2, ...): the delay, doubled each time."""
        return self.delay * float(2 ** (retry - 1))


def token_value(stdout: str) -> Optional[str]:
    """The token `zfs get -H -p -o value receive_resume_token` printed ("-": none)."""
    value = stdout.strip()
    return None if value in ("", "-") else value


@attrs.frozen
class Transfer:
    """One send step, run until it works, a retry is not allowed, or they ran out."""

    step: Step
    #: "[Target] DATASET@SNAPSHOT", the log's name for it
    title: str
    policy: Policy
    console: Console
    sleep: Callable[[float], None]

    def run(self, run_commands: RunCommands, read_token: ReadToken) -> None:
        commands: Sequence[Command] = self.step.commands
        retry = 0
        last: Optional[TransportError] = None
        while True:
            try:
                if last is not None:
                    commands = self._again(retry, read_token, last)
                run_commands(commands)
                return
            except TransportError as exc:
                if retry >= self.policy.retries or self.step.resume is None:
                    if retry:
                        raise TransportError(f"{exc} (after {retry} retries)") from exc
                    raise
                last = exc
                retry += 1
                wait = self.policy.wait(retry)
                self.console.warning(
                    f"{self.title}: transfer failed ({exc}); retrying in {wait:g} s "
                    f"(retry {retry} of {self.policy.retries})"
                )
                self.sleep(wait)

    def _again(self, retry: int, read_token: ReadToken, last: TransportError) -> Sequence[Command]:
        """The commands of retry number `retry`: from the target's resume token, or from
        the start when nothing stayed there."""
        resume = self.step.resume
        assert resume is not None
        try:
            token = read_token(resume.token)
        except DatasetNotFound:
            token = None  # (a first, full receive: nothing of it arrived)
        of = f"retry {retry} of {self.policy.retries}"
        if token is None:
            self.console.verbose(
                f"{self.title}: sending again from the start ({of}: no resume token, "
                "nothing arrived)"
            )
            return self.step.commands
        if resume.send is None:
            raise ReconcileError(
                f"{last}; not retried: the stream of several snapshots (zfs send -I) was "
                "cut, and its resume token resumes only the one that was cut (the next "
                "run resumes it)"
            )
        self.console.verbose(f"{self.title}: resuming from the resume token ({of})")
        return resumed(self.step, token)
