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
from executors.progress import Board, Progress
from executors.retry import Policy, Transfer, token_value
from executors.runner import Runner, Stage, group_stages
from planner.actions import (
    SOURCE,
    TARGET,
    AbortResume,
    Action,
    Bookmark,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    DestroyDataset,
    Hold,
    Release,
    Rollback,
    Send,
)
from planner.compile import CHECK_HELPERS, POST_SNAPSHOT, PRE_SNAPSHOT, Command, Compiled, Step
from planner.plan import Plan
from reconcile import permissions, zfs_text
from reconcile.errors import (
    CommandNotFound,
    DatasetNotFound,
    GuardRefused,
    PermissionDenied,
    ReconcileError,
    ZfsError,
)
from reconcile.guard_words import READ_ONLY
from reconcile.job import Job
from reconcile.model import Host, Side

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
        return self.job.source if side == SOURCE else self.job.target

    def stages(self, commands: Sequence[Command]) -> list[Stage]:
        return [Stage(self.host(c.side), c.argv, c.side.label) for c in commands]

    # --- running one step ---------------------------------------------------------

    def _announce(self, plan: Plan, step: Step) -> None:
        """The classic log's lines for what a step is about to do (in plan order)."""
        say = self.console.verbose
        if step.kind in (PRE_SNAPSHOT, POST_SNAPSHOT):
            say(f"[Source] Running {step.kind}")
            return
        for i in step.actions:
            action = plan.actions[i]
            if isinstance(action, CreateSnapshots):
                say(f"[Source] Creating snapshots {action.snapshot} in pool {action.pool}")
            elif isinstance(action, CreateParent):
                say(f"[Target] {action.dataset}: Creating unmountable parent")
            elif isinstance(action, AbortResume):
                say(f"[Target] {action.dataset}: {action.reason}")
            elif isinstance(action, Rollback):
                say(f"[Target] {action.dataset}: Rolling back to @{action.snapshot}")
            elif isinstance(action, DestroyDataset):
                say(f"[Target] {action.dataset}: Destroying (missing on source)")
            elif isinstance(action, Send):
                what = {"full": "receiving full", "incremental": "receiving incremental",
                        "resume": "resuming"}[action.mode]  # fmt: skip
                if action.from_bookmark:
                    what += " (from bookmark)"
                if action.from_origin:
                    what += f" (a clone of {action.base})"
                for snap in action.snapshots:
                    say(f"[Target] {action.target_dataset}@{snap}: {what}")
            elif isinstance(action, Destroy):
                for name in step.about:
                    say(f"{action.side.label} {name}: Destroying")
            elif isinstance(action, Bookmark):
                name = f"{action.dataset}#{action.bookmark}"
                of = f"#{action.copy_of}" if action.copy_of is not None else f"@{action.snapshot}"
                say(f"[Source] {name}: Bookmarking {of} ({action.reason})")
            elif isinstance(action, DestroyBookmark):
                name = f"{action.dataset}#{action.bookmark}"
                say(f"[Source] {name}: Destroying bookmark ({action.reason})")
            elif isinstance(action, (Hold, Release)):
                # (3.3's word, "releaseing" included)
                name = f"{action.dataset}@{action.snapshot}"
                self.console.debug(f"{action.side.label} {name}: {action.kind}ing")

    def _do(self, plan: Plan, step: Step) -> None:
        """Run a step's command(s); raise ReconcileError when it failed."""
        if len(step.commands) > 1:
            self._send(plan, step)
            return
        command = step.commands[0]
        out = self.runner.run(self.host(command.side), command.argv, label=command.side.label)
        if step.kind == "mount" and out.stdout.strip():
            self.console.verbose(f"[Target] {_dataset(plan, step)}: {out.stdout.strip()}")

    def _watch(self, plan: Plan, step: Step, stages: list[Stage]) -> Optional[Progress]:
        if not self.progress:
            return None
        processes = len(group_stages(stages))
        count: Optional[tuple[int, str]] = None
        if self.job.target.is_local:
            count = (processes - 1, "rchar")  # what zfs recv read
        elif self.job.source.is_local:
            count = (processes - 2, "wchar")  # what the last stage here handed to ssh
        action = plan.actions[step.actions[0]]
        assert isinstance(action, Send)
        title = f"[Target] {action.target_dataset}@{action.snapshot}"
        return Progress(title, self._board.channel(), count=count)

    def _send(self, plan: Plan, step: Step) -> None:
        """A transfer, repeated (executors.retry) when its link broke."""
        action = plan.actions[step.actions[0]]
        assert isinstance(action, Send)
        policy = Policy(self.job.retries, self.job.retry_delay)
        title = f"[Target] {action.target_dataset}@{action.snapshot}"
        transfer = Transfer(step, title, policy, self.console, self._sleep)
        transfer.run(
            lambda commands: self._transfer(plan, step, commands), self._token, self._resumes
        )

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

    def _transfer(self, plan: Plan, step: Step, commands: Sequence[Command]) -> None:
        stages = self.stages(commands)
        watch = self._watch(plan, step, stages)
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
        found = self.runner.run(self.host(check.side), check.argv, label=TARGET.label, check=False)
        name = check.argv[-1]
        if found.returncode != 0:
            raise ZfsError(f"transfer failed and {name} did not arrive: {result.stderrs}")
        self.console.warning(f"[Target] {name}: ignoring transfer errors, the snapshot arrived")

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
            ).grant(self.user(TARGET))
            self.console.warning(
                f"[Target] {denied.dataset}: property {denied.property} not received "
                f"(permission denied; {grant})"
            )

    def explain(self, step: Step, exc: ReconcileError) -> str:
        """The error, and for a missing delegation the dataset, the permissions and the
        `zfs allow` line that grants them."""
        if not isinstance(exc, PermissionDenied):
            text = str(exc)
            # (a read-only guard lets zfs send through: in a send step it was the target's)
            on_source = all(c.side == SOURCE for c in step.commands)
            if on_source and isinstance(exc, GuardRefused) and READ_ONLY in exc.reason:
                text += (
                    " (the source's key is pinned to zfs-autobackup-guard --read-only: pull "
                    "with --read-only-source)"
                )
            return text
        found = zfs_text.permission_denied(exc.stderr)
        named = next((d.dataset for d in found if d.dataset), None)
        sending = any(d.operation == "send" for d in found)
        new = any(d.new_dataset for d in found)
        commands = [c for c in step.commands if c.argv and c.argv[0] == "zfs"]
        if len(commands) > 1:  # a send: its zfs send or its zfs recv
            commands = [c for c in commands if (c.argv[1] == "send") == sending]
        if not commands:
            return str(exc)
        command = commands[0]
        need = permissions.need(command.argv, new=new)
        if need is None:
            return str(exc)
        # (zfs names the dataset it refused to work on; a new one is granted on its parent)
        if named and named != need.dataset and not new and command.argv[1] != "create":
            need = permissions.Need(need.permissions, named)
        return (
            f"permission denied: {_verb(command.argv)} needs the delegated permission "
            f"{','.join(need.permissions)} on {need.dataset} "
            f"(grant it: {need.grant(self.user(command.side))})"
        )

    def _soft_failure(self, plan: Plan, step: Step, exc: ReconcileError) -> None:
        """A soft step failed: say so; nothing counts as failed."""
        if isinstance(exc, DatasetNotFound) and step.kind in ("destroy", "destroy-bookmark"):
            return  # gone already: that is what was wanted
        if step.kind in ("hold", "release") and zfs_text.hold_already_done(
            step.kind == "hold", str(exc)
        ):
            return
        action = plan.actions[step.actions[0]]
        side = _label(plan, step)
        if isinstance(action, (Destroy, DestroyBookmark)):
            what = ", ".join(step.about)
            why = self.explain(step, exc)
            self.console.error(f"{side} {what}: can't destroy it ({why}); the backup goes on")
        elif isinstance(action, Release):
            where = f"{action.dataset}@{action.snapshot}"
            self.console.error(
                f"{side} {where}: can't release {action.tag} ({self.explain(step, exc)}); "
                "the backup goes on"
            )
        else:
            why = self.explain(step, exc)
            self.console.error(f"{side} {_dataset(plan, step)}: can't {step.kind} it ({why})")

    def _attempt(self, plan: Plan, step: Step) -> Optional[ReconcileError]:
        """Run a step; its failure (None: it worked)."""
        try:
            self._do(plan, step)
        except ReconcileError as exc:
            return exc
        return None

    # --- scheduling -----------------------------------------------------------------

    def execute(
        self,
        plan: Plan,
        compiled: Compiled,
        *,
        stop_on_error: bool = False,
        before_first: Optional[Callable[[Action], None]] = None,
    ) -> Outcome:
        steps = compiled.steps
        run = _Run(failed={p.unit: None for p in plan.problems})
        index = 0
        while index < len(steps):
            step = steps[index]
            if step.kind == CHECK_HELPERS:
                self._check_helpers(step)
                index += 1
                continue
            if before_first and step.actions:
                before_first(plan.actions[step.actions[0]])
            if step.group and self.parallel > 1 and not stop_on_error:
                batch = _group(steps, index)
                ok = self._parallel(plan, steps, batch, run)
            else:
                batch = [index]
                ok = self._step(plan, steps, index, run)
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

    def _blocked(self, plan: Plan, steps: Sequence[Step], index: int, run: _Run) -> list[int]:
        """The steps this one needs that failed (a post-snapshot command runs anyway)."""
        step = steps[index]
        if step.kind == POST_SNAPSHOT:
            return []
        undone = {d for a in step.actions for d in plan.depends[a]} & run.undone
        return [n for n in step.needs if n in run.broken or set(steps[n].actions) & undone]

    @staticmethod
    def _undone_needs(plan: Plan, step: Step, run: _Run) -> bool:
        """An action this step's actions depend on did not happen."""
        return any(d in run.undone for a in step.actions for d in plan.depends[a])

    def _skip(self, plan: Plan, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """Skip (and say why) a step whose dataset or dependency failed."""
        step = steps[index]
        blocked = self._blocked(plan, steps, index, run)
        # a dataset that failed stops its own steps; a pool's snapshot still covers the
        # others (as v3: snapshots are taken before anything is sent); a dataset that can't
        # be sent is still thinned (as v3, which thins before it finds out)
        unit_failed = (
            step.kind != "snapshot" and not step.soft and any(u in run.failed for u in step.units)
        )
        if not (blocked or index in run.broken or unit_failed):
            return False
        run.broken.add(index)
        run.undone.update(step.actions)
        run.skipped += len(step.actions)
        if blocked and not any(u in run.failed for u in step.units):
            cause = steps[blocked[0]]
            if cause.kind != PRE_SNAPSHOT:  # (its failure was said: no snapshot, that is all)
                self.console.error(
                    f"{_label(plan, step)} {_dataset(plan, step)}: skipped, "
                    f"because {_dataset(plan, cause)} failed"
                )
            run.fail(step.units)
        return True

    def _finish(self, plan: Plan, steps: Sequence[Step], index: int, run: _Run,
                exc: Optional[ReconcileError]) -> bool:  # fmt: skip
        """Account for a step that ran; False if it failed (and counts)."""
        step = steps[index]
        if exc is None:
            run.executed += len(step.actions)
            return True
        if step.fallback:
            return self._fallback(plan, steps, index, run)
        if step.soft:
            self._soft_failure(plan, step, exc)
            run.executed += len(step.actions)
            return True
        if step.kind in ("hold",) and zfs_text.hold_already_done(True, str(exc)):
            run.executed += len(step.actions)
            return True
        run.broken.add(index)
        run.undone.update(step.actions)
        if step.kind == PRE_SNAPSHOT:
            self.console.error(f"[Source] pre-snapshot-cmd failed: {exc}")
            for later in range(index + 1, len(steps)):
                if index in steps[later].needs:
                    run.fail(steps[later].units)
            return False
        if step.kind == POST_SNAPSHOT:
            self.console.error(f"[Source] post-snapshot-cmd failed: {exc}")
            run.broken.discard(index)
            return True
        run.fail(step.units)
        self.console.error(
            f"{_label(plan, step)} {_dataset(plan, step)}: FAILED: {self.explain(step, exc)}"
        )
        return False

    def _fallback(self, plan: Plan, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """Run a step's fallback, one step at a time, skipping what its failed datasets
        no longer need."""
        ok = True
        for alt in steps[index].fallback:
            dead = [n for n in alt.needs if n in run.broken] or self._undone_needs(plan, alt, run)
            if dead or (not alt.soft and any(u in run.failed for u in alt.units)):
                run.skipped += len(alt.actions)
                run.undone.update(alt.actions)
                continue
            exc = self._attempt(plan, alt)
            if exc is None:
                run.executed += len(alt.actions)
            elif alt.soft:
                self._soft_failure(plan, alt, exc)
                run.executed += len(alt.actions)
            elif alt.kind == "hold" and zfs_text.hold_already_done(True, str(exc)):
                run.executed += len(alt.actions)
            else:
                ok = False
                run.fail(alt.units)
                run.undone.update(alt.actions)
                self.console.error(
                    f"{_label(plan, alt)} {_dataset(plan, alt)}: FAILED: {self.explain(alt, exc)}"
                )
        return ok

    def _partly_blocked(self, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """A batch step some of whose datasets failed already: its fallback does the rest
        (a `zfs hold -r` would also hold a failed dataset's snapshot)."""
        step = steps[index]
        return (
            bool(step.fallback) and len(step.units) > 1 and any(u in run.failed for u in step.units)
        )

    def _step(self, plan: Plan, steps: Sequence[Step], index: int, run: _Run) -> bool:
        """Run one step unless something it needs failed; False if it failed."""
        if self._partly_blocked(steps, index, run):
            self._announce(plan, steps[index])
            return self._fallback(plan, steps, index, run)
        if self._skip(plan, steps, index, run):
            return True
        self._announce(plan, steps[index])
        return self._finish(plan, steps, index, run, self._attempt(plan, steps[index]))

    def _parallel(self, plan: Plan, steps: Sequence[Step], batch: list[int], run: _Run) -> bool:
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
                    if self._partly_blocked(steps, i, run) or self._skip(plan, steps, i, run):
                        if i not in run.broken:
                            self._announce(plan, step)
                            ok = self._fallback(plan, steps, i, run) and ok
                        pending.discard(i)
                        continue
                    self._announce(plan, step)
                    running[pool.submit(self._attempt, plan, step)] = i
                    held.update(step.units)
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    pending.discard(i)
                    ok = self._finish(plan, steps, i, run, future.result()) and ok
        return ok


def _verb(argv: Sequence[str]) -> str:
    """`zfs destroy`: the program and its subcommand, for messages."""
    return " ".join(argv[:2])


def _group(steps: Sequence[Step], index: int) -> list[int]:
    group = steps[index].group
    end = index
    while end < len(steps) and steps[end].group == group:
        end += 1
    return list(range(index, end))


def _label(plan: Plan, step: Step) -> str:
    """[Source] or [Target]: the side of the action it carries out (a send's is the
    target's, though its first command runs on the source)."""
    return (plan.actions[step.actions[0]].side if step.actions else step.side).label


def _dataset(plan: Plan, step: Step) -> str:
    if step.kind in (PRE_SNAPSHOT, POST_SNAPSHOT, CHECK_HELPERS) or not step.actions:
        return step.kind
    action = plan.actions[step.actions[0]]
    if isinstance(action, CreateSnapshots):
        return f"pool {action.pool}"
    return action.dataset
