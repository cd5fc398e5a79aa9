"""Execute a compiled plan: schedule its steps, isolate failures. Never builds a command.

Steps run in order (planner.compile made them, with their commands). When a step
fails, the error is reported with its dataset, that dataset (its unit) counts as failed,
and every step that needs it (directly or not) is skipped and counts its own units as
failed too. Other datasets go on. With `stop_on_error` (--debug) the run stops at the
first failure.

Steps of one group (sends, snapshot destroys, the commands of one batch of holds) run
`parallel` at a time (with `stop_on_error`, one at a time): one starts when the steps it
needs are done and no earlier step of its datasets is still running or waiting.

Thinning never blocks sending: a soft step (a thinning destroy, a release, a mount) that
fails is reported and counts as nothing failed; a step with a fallback (a batched
destroy, a batch of holds) that fails, or that carries an action whose dataset already
failed, runs its fallback instead: the same, one snapshot at a time.

The runner decides what really runs: under `plan`/`--test` it is a ReadOnlyRunner, and
every write is only shown.
"""

from __future__ import annotations

import getpass
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Optional

import attrs

from executors.console import Console
from executors.listing_store import Store
from executors.progress import Board, Progress
from executors.retry import Policy, Transfer, token_value
from executors.runner import Runner, Stage, group_stages
from planner.commands import Command, Verb
from planner.compile import Compiled, Failure, Step, Tolerated
from planner.describe import WHY, Level
from reconcile import permissions, zfs_text
from reconcile.errors import (
    CommandNotFound,
    DatasetNotFound,
    GuardRefused,
    PermissionDenied,
    ReconcileError,
    ZfsError,
)
from reconcile.job import Job
from reconcile.model import Host, Side
from reconcile.never import assert_never

#: sends at the same time unless --parallel says otherwise
DEFAULT_PARALLEL = 4


@attrs.frozen
class Settings:
    """How a plan is executed (not part of the plan)."""

    #: show transfer progress
    progress: bool = False
    #: steps of a group at the same time
    parallel: int = DEFAULT_PARALLEL
    #: --debug: one thing at a time, in order, and stop at the first failure
    debug: bool = False
    #: sends print their size estimate (`zfs send -P`), for --prometheus-file
    send_sizes: bool = False
    #: the listing cache (None: --no-cache, or a mode that reads everything)
    store: Optional[Store] = attrs.field(default=None, eq=False, repr=False)
    #: waits before a transfer is retried (seconds; tests pass their own)
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False, repr=False)

    @property
    def observe_together(self) -> bool:
        """Observe source and target at once: unless --parallel 1 or --debug."""
        return self.parallel > 1 and not self.debug


DEFAULTS = Settings()


@attrs.frozen
class Outcome:
    failed: tuple[str, ...]
    executed: int
    skipped: int
    #: what the sends' `zfs send -P` estimated (0 without -P)
    sent_bytes: int = 0


@attrs.define
class _Run:
    #: units (datasets) that failed, in order
    failed: dict[str, None]
    #: steps that failed or were skipped
    broken: set[int] = attrs.Factory(set)
    #: plan actions that did not happen (their step, or their fallback step, failed or
    #: was skipped): what depends on them is skipped, whichever step carries it
    undone: set[int] = attrs.Factory(set)
    executed: int = 0
    skipped: int = 0

    def fail(self, units: Sequence[str]) -> None:
        for unit in units:
            self.failed[unit] = None


class Executor:
    def __init__(
        self, job: Job, runner: Runner, console: Console, settings: Settings = DEFAULTS
    ) -> None:
        self.job = job
        self.runner = runner
        self.console = console
        self.progress = settings.progress
        self.parallel = max(1, settings.parallel)
        self._board = Board(console.progress, combine=console.err.isatty())
        self._sizes_lock = threading.Lock()
        self._sent_bytes = 0
        self._sleep = settings.sleep

    def _count(self, stderr: str) -> None:
        size = zfs_text.parse_send_size(stderr)
        if size is not None:
            with self._sizes_lock:
                self._sent_bytes += size

    def host(self, side: Side) -> Host:
        return self.job.remote.host(side)

    def stages(self, commands: Sequence[Command]) -> list[Stage]:
        return [Stage(self.host(c.side), c.argv, c.side.label) for c in commands]

    # --- running one step ---------------------------------------------------------

    def _announce(self, step: Step) -> None:
        """The classic log's lines for what a step is about to do (in plan order)."""
        for line in step.lines:
            if line.level is Level.VERBOSE:
                self.console.verbose(line.text)
            elif line.level is Level.DEBUG:
                self.console.debug(line.text)
            else:
                assert_never(line.level)

    def _do(self, step: Step) -> None:
        """Run a step's command(s); raise ReconcileError when it failed."""
        if step.pipeline:
            self._send(step)
            return
        command = step.commands[0]
        out = self.runner.run(self.host(command.side), command.argv, label=command.side.label)
        if step.echo and out.stdout.strip():
            self.console.verbose(f"{step.label} {step.subject}: {out.stdout.strip()}")

    def _watch(self, step: Step, stages: list[Stage]) -> Optional[Progress]:
        if not self.progress:
            return None
        processes = len(group_stages(stages))
        count: Optional[tuple[int, str]] = None
        if self.job.remote.target.is_local:
            count = (processes - 1, "rchar")  # what zfs recv read
        elif self.job.remote.source.is_local:
            count = (processes - 2, "wchar")  # what the last stage here handed to ssh
        return Progress(step.title, self._board.channel(), count=count)

    def _send(self, step: Step) -> None:
        """A transfer, repeated (executors.retry) when its link broke."""
        policy = Policy(self.job.transfer.retries, self.job.transfer.retry_delay)
        transfer = Transfer(step, step.title, policy, self.console, self._sleep)
        transfer.run(lambda commands: self._transfer(step, commands), self._token, self._resumes)

    def _token(self, command: Command) -> Optional[str]:
        """The receive_resume_token `command` reads ("-" and "" are none)."""
        return token_value(
            self.runner.run(self.host(command.side), command.argv, label=command.side.label).stdout
        )

    def _resumes(self, command: Command) -> Optional[str]:
        """The snapshot a resume token resumes (`zfs send -nv -t`: its toname)."""
        out = self.runner.run(
            self.host(command.side), command.argv, label=command.side.label, check=False
        )
        toname, _ = zfs_text.parse_resume_info(out.stdout + "\n" + out.stderr)
        return toname.partition("@")[2] if toname else None

    def _transfer(self, step: Step, commands: Sequence[Command]) -> None:
        stages = self.stages(commands)
        watch = self._watch(step, stages)
        # (a failed pipeline raises, unless --ignore-transfer-errors checks what arrived)
        result = self.runner.pipeline(stages, check=step.arrived is None, watch=watch)
        if result.stderrs:
            self._count(result.stderrs[0])
        if result.ok:
            self._denied_properties(step, "\n".join(result.stderrs))
            return
        # --ignore-transfer-errors: fine as long as the snapshot arrived
        check = step.arrived
        assert check is not None
        found = self.runner.run(self.host(check.side), check.argv, label=check.side.label,
                                check=False)  # fmt: skip
        name = check.argv[-1]
        if found.returncode != 0:
            raise ZfsError(f"transfer failed and {name} did not arrive: {result.stderrs}")
        self.console.warning(
            f"{check.side.label} {name}: ignoring transfer errors, the snapshot arrived"
        )

    def user(self, side: Side) -> str:
        """Who the commands on `side` run as (for `zfs allow -u`): the ssh user, or
        this machine's (ssh's default when the host names none)."""
        ssh = self.host(side).ssh
        return ssh.split("@", 1)[0] if ssh and "@" in ssh else getpass.getuser()

    def _denied_properties(self, step: Step, stderr: str) -> None:
        """A receive that worked but could not set some received properties (zfs exits
        0): say which, and the permission that lets it."""
        for denied in zfs_text.permission_denied(stderr):
            if denied.property is None or denied.dataset is None:
                continue
            grant = permissions.Need(
                (permissions.for_property(denied.property),), denied.dataset
            ).grant(self.user(Side.TARGET))
            self.console.warning(
                f"{Side.TARGET.label} {denied.dataset}: property {denied.property} not received "
                f"(permission denied; {grant})"
            )

    def explain(self, step: Step, exc: ReconcileError) -> str:
        """The error, and for a missing delegation the dataset, the permissions and the
        `zfs allow` line that grants them."""
        if not isinstance(exc, PermissionDenied):
            text = str(exc)
            # (a read-only guard lets zfs send through: in a send step it was the target's)
            on_source = all(c.side == Side.SOURCE for c in step.commands)
            if on_source and isinstance(exc, GuardRefused) and exc.read_only:
                text += (
                    " (the source's key is pinned to zfs-autobackup-guard --read-only: pull "
                    "with --read-only-source)"
                )
            return text
        found = zfs_text.permission_denied(exc.stderr)
        named = next((d.dataset for d in found if d.dataset), None)
        sending = any(d.operation == "send" for d in found)
        new = any(d.new_dataset for d in found)
        commands = [c for c in step.commands if c.need is not None]
        if len(commands) > 1:  # a send: its zfs send or its zfs recv
            commands = [c for c in commands if (c.verb is Verb.SEND) == sending]
        if not commands:
            return str(exc)
        command = commands[0]
        need = command.need_new if new and command.need_new else command.need
        assert need is not None
        # (zfs names the dataset it refused to work on; a new one is granted on its parent)
        if named and named != need.dataset and not new and command.verb is not Verb.CREATE:
            need = permissions.Need(need.permissions, named)
        return (
            f"permission denied: {command.program} needs the delegated permission "
            f"{','.join(need.permissions)} on {need.dataset} "
            f"(grant it: {need.grant(self.user(command.side))})"
        )

    def _tolerated(self, step: Step, exc: ReconcileError) -> bool:
        """A failure that means the step's work was done already."""
        for tolerated in step.tolerates:
            if tolerated is Tolerated.GONE:
                done = isinstance(exc, DatasetNotFound)
            elif tolerated is Tolerated.HELD:
                done = zfs_text.hold_already_done(True, str(exc))
            elif tolerated is Tolerated.RELEASED:
                done = zfs_text.hold_already_done(False, str(exc))
            else:
                assert_never(tolerated)
            if done:
                return True
        return False

    def _complain(self, step: Step, exc: ReconcileError) -> None:
        self.console.error(step.complaint.replace(WHY, self.explain(step, exc)))

    def _attempt(self, step: Step) -> Optional[ReconcileError]:
        """Run a step; its failure (None: it worked)."""
        try:
            self._do(step)
        except ReconcileError as exc:
            return exc
        return None

    # --- scheduling -----------------------------------------------------------------

    def execute(
        self,
        compiled: Compiled,
        *,
        failed: Sequence[str] = (),
        stop_on_error: bool = False,
        before: Optional[Callable[[Step], None]] = None,
    ) -> Outcome:
        """Run `compiled`'s steps. `failed`: datasets that failed already (what the plan
        found it can't do); `before(step)`: called before each step that carries actions."""
        steps = compiled.steps
        run = _Run(failed=dict.fromkeys(failed))
        index = 0
        while index < len(steps):
            step = steps[index]
            if step.probe:
                self._check_helpers(step)
                index += 1
                continue
            if before and step.actions:
                before(step)
            if step.group and self.parallel > 1 and not stop_on_error:
                batch = _group(steps, index)
                ok = self._parallel(steps, batch, run)
            else:
                batch = [index]
                ok = self._step(steps, index, run)
            if not ok and stop_on_error:
                break
            index = batch[-1] + 1
        return Outcome(tuple(run.failed), run.executed, run.skipped, self._sent_bytes)

    def _check_helpers(self, step: Step) -> None:
        """Refuse, before any transfer, when a helper program is missing on a host."""
        command = step.commands[0]
        host = self.host(command.side)
        out = self.runner.run(host, command.argv, label=command.side.label)
        missing = out.stdout.split()
        if missing:
            raise CommandNotFound(
                f"{', '.join(missing)} not installed on the {command.side} ({host.describe()}): "
                "install it there, or drop the option that needs it "
                "(--compress, --buffer, --rate, --send-pipe, --recv-pipe)"
            )

    @staticmethod
    def _blocked(steps: Sequence[Step], index: int, run: _Run) -> list[int]:
        """The steps this one needs that failed (a step that always runs: none)."""
        step = steps[index]
        if step.failure is Failure.ALWAYS:
            return []
        undone = set(step.after) & run.undone
        return [n for n in step.needs if n in run.broken or set(steps[n].actions) & undone]

    def _skip(self, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """Skip (and say why) a step whose dataset or dependency failed."""
        step = steps[index]
        blocked = self._blocked(steps, index, run)
        # a dataset that failed stops its own steps; a pool's snapshot still covers the
        # others (as v3: snapshots are taken before anything is sent); a dataset that can't
        # be sent is still thinned (as v3, which thins before it finds out)
        unit_failed = (
            step.blocked_by_units and not step.soft and any(u in run.failed for u in step.units)
        )
        if not (blocked or index in run.broken or unit_failed):
            return False
        run.broken.add(index)
        run.undone.update(step.actions)
        run.skipped += len(step.actions)
        if blocked and not any(u in run.failed for u in step.units):
            cause = steps[blocked[0]]
            if cause.failure is not Failure.GATES:  # (its failure was said once: no snapshot)
                self.console.error(
                    f"{step.label} {step.subject}: skipped, because {cause.subject} failed"
                )
            run.fail(step.units)
        return True

    def _finish(self, steps: Sequence[Step], index: int, run: _Run,
                exc: Optional[ReconcileError]) -> bool:  # fmt: skip
        """Account for a step that ran; False if it failed (and counts)."""
        step = steps[index]
        if exc is None:
            run.executed += len(step.actions)
            return True
        if step.fallback:
            return self._fallback(steps, index, run)
        if self._tolerated(step, exc):
            run.executed += len(step.actions)
            return True
        if step.failure is Failure.REPORTED:
            self._complain(step, exc)
            run.executed += len(step.actions)
            return True
        self._complain(step, exc)
        if step.failure is Failure.ALWAYS:
            return True
        run.broken.add(index)
        run.undone.update(step.actions)
        if step.failure is Failure.GATES:
            for later in range(index + 1, len(steps)):
                if index in steps[later].needs:
                    run.fail(steps[later].units)
            return False
        if step.failure is Failure.FAILS:
            run.fail(step.units)
            return False
        return assert_never(step.failure)

    def _fallback(self, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """Run a step's fallback, one step at a time, skipping what its failed datasets
        no longer need."""
        ok = True
        for alt in steps[index].fallback:
            dead = [n for n in alt.needs if n in run.broken] or set(alt.after) & run.undone
            if dead or (not alt.soft and any(u in run.failed for u in alt.units)):
                run.skipped += len(alt.actions)
                run.undone.update(alt.actions)
                continue
            exc = self._attempt(alt)
            if exc is None or self._tolerated(alt, exc):
                run.executed += len(alt.actions)
            elif alt.soft:
                self._complain(alt, exc)
                run.executed += len(alt.actions)
            else:
                ok = False
                run.fail(alt.units)
                run.undone.update(alt.actions)
                self._complain(alt, exc)
        return ok

    @staticmethod
    def _partly_blocked(steps: Sequence[Step], index: int, run: _Run) -> bool:
        """A batch step some of whose datasets failed already: its fallback does the rest
        (a `zfs hold -r` would also hold a failed dataset's snapshot)."""
        step = steps[index]
        return (
            bool(step.fallback) and len(step.units) > 1 and any(u in run.failed for u in step.units)
        )

    def _step(self, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """Run one step unless something it needs failed; False if it failed."""
        if self._partly_blocked(steps, index, run):
            self._announce(steps[index])
            return self._fallback(steps, index, run)
        if self._skip(steps, index, run):
            return True
        self._announce(steps[index])
        return self._finish(steps, index, run, self._attempt(steps[index]))

    def _parallel(self, steps: Sequence[Step], batch: list[int], run: _Run) -> bool:
        """The steps of one group, `parallel` at a time; False if one failed. (Each waits
        for zfs to commit a transaction group: side by side they share them.)"""
        waiting = list(batch)
        pending = set(batch)
        running: dict[Future[Optional[ReconcileError]], int] = {}
        ok = True
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="zfs") as pool:
            while waiting or running:
                # in plan order: a dataset's steps one after the other, dependencies first
                held: set[str] = {u for i in running.values() for u in steps[i].units}
                for i in list(waiting):
                    if len(running) >= self.parallel:
                        break
                    step = steps[i]
                    if any(u in held for u in step.units) or any(d in pending for d in step.needs):
                        held.update(step.units)
                        continue
                    waiting.remove(i)
                    if self._partly_blocked(steps, i, run) or self._skip(steps, i, run):
                        if i not in run.broken:
                            self._announce(step)
                            ok = self._fallback(steps, i, run) and ok
                        pending.discard(i)
                        continue
                    self._announce(step)
                    running[pool.submit(self._attempt, step)] = i
                    held.update(step.units)
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    pending.discard(i)
                    ok = self._finish(steps, i, run, future.result()) and ok
        return ok


def _group(steps: Sequence[Step], index: int) -> list[int]:
    group = steps[index].group
    end = index
    while end < len(steps) and steps[end].group == group:
        end += 1
    return list(range(index, end))
