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
- a token after a stream of several snapshots (-I) was cut: it resumes only the
  snapshot that was cut (`zfs send -nv -t` says which), so the resumed send is followed
  by the rest of the stream (`zfs send -I @CUT DS@LAST`, or `-i` for one more).

Nothing is ever destroyed or aborted to retry. The sleep is passed in (tests never wait).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Callable, Optional

import attrs

from executors.console import Console
from planner.commands import Command
from planner.compile import Step, continued, resumed
from reconcile.errors import DatasetNotFound, ReconcileError, TransportError

#: runs a step's pipeline (these commands); raises ReconcileError when it failed
RunCommands = Callable[[Sequence[Command]], None]
#: reads a token (the step's `zfs get receive_resume_token`): its value, None for none;
#: raises ReconcileError when it could not be read
ReadToken = Callable[[Command], Optional[str]]
#: reads which snapshot a token resumes (`zfs send -nv -t`): its name after the @
ReadResumed = Callable[[Command], Optional[str]]


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

    def run(
        self, run_commands: RunCommands, read_token: ReadToken, read_resumed: ReadResumed
    ) -> None:
        #: the pipelines still to run, the first one being the one that runs now
        todo: list[Sequence[Command]] = [self.step.commands]
        retry = 0
        last: Optional[TransportError] = None
        while True:
            try:
                if last is not None:
                    todo = self._again(retry, read_token, read_resumed, last, todo[0])
                while todo:
                    run_commands(todo[0])
                    todo.pop(0)
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

    def _again(
        self,
        retry: int,
        read_token: ReadToken,
        read_resumed: ReadResumed,
        last: TransportError,
        cut: Sequence[Command],
    ) -> list[Sequence[Command]]:
        """The pipelines of retry number `retry`: from the target's resume token (then
        the rest of a -I stream), or the `cut` one again from its start when nothing of
        it stayed there."""
        resume = self.step.resume
        assert resume is not None and resume.send is not None
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
            return [cut]
        if not resume.rest:
            self.console.verbose(f"{self.title}: resuming from the resume token ({of})")
            return [resumed(self.step, token)]
        snapshot = read_resumed(resume.which(token))
        rest = continued(self.step, snapshot) if snapshot is not None else None
        if snapshot != resume.last and rest is None:
            raise ReconcileError(
                f"{last}; not retried: the target's resume token resumes "
                f"{snapshot or 'a snapshot it does not name'}, which is not in this stream"
            )
        then = f", then the rest of the stream after {snapshot}" if rest else ""
        self.console.verbose(
            f"{self.title}: resuming {snapshot} from the resume token{then} ({of})"
        )
        return [resumed(self.step, token), *([rest] if rest else [])]
