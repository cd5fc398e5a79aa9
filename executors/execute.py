"""Execute a plan: each action as commands on the right host, failures isolated.

Actions run in the plan's order. When an action fails, the error is reported with its
dataset, that dataset (its "unit") counts as failed, and every action that depends on
it (directly or not) is skipped and counts its own unit as failed too. Other datasets go
on. With `stop_on_error` (--debug) the run stops at the first failure.

Sends, and snapshot destroys, run `parallel` at a time (--parallel; with `stop_on_error`
one at a time): one starts when everything it depends on is done (a child's full send
waits for its parent's) and no earlier action of its dataset is still running or waiting.
Everything else runs one action (or one batch) at a time.

Thinning never blocks sending: a thinning destroy (or a release) that fails is reported
and counts as nothing failed (as zfs-autobackup 3.3, which destroys one snapshot at a
time and goes on): a batched `zfs destroy ds@a,b,c` that zfs refuses as a whole (one
snapshot has clones, or is held) is retried one snapshot at a time, and the dataset's
sends go on.

The runner decides what really runs: under `plan`/`--test` it is a ReadOnlyRunner, and
every write is only shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Optional

import attrs

from executors import commands, transfer
from executors.console import Console
from executors.progress import Board, Progress
from executors.runner import Runner, Stage, group_stages
from planner.actions import (
    SOURCE,
    TARGET,
    AbortResume,
    Action,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyDataset,
    Hold,
    Mount,
    Release,
    Rollback,
    Send,
)
from planner.cover import Cover, Present, cover
from planner.plan import Plan
from reconcile.errors import DatasetNotFound, ReconcileError, ZfsError
from reconcile.job import Job
from reconcile.limits import ARG_BYTES, chunked
from reconcile.model import Host

#: holds (releases) per command before they are split over --parallel commands
HOLDS_PER_COMMAND = 16
#: sends at the same time unless --parallel says otherwise
DEFAULT_PARALLEL = 4


@attrs.frozen
class Settings:
    """How a plan is executed (not part of the plan)."""

    #: show transfer progress
    progress: bool = False
    #: sends at the same time
    parallel: int = DEFAULT_PARALLEL


DEFAULTS = Settings()


@attrs.frozen
class Outcome:
    failed: tuple[str, ...]
    executed: int
    skipped: int


def _label(side: str) -> str:
    return "[Source]" if side == SOURCE else "[Target]"


class Executor:
    def __init__(
        self,
        job: Job,
        runner: Runner,
        console: Console,
        settings: Settings = DEFAULTS,
        present: Optional[Mapping[str, Present]] = None,
        features: Optional[Mapping[str, Mapping[str, frozenset[str]]]] = None,
    ) -> None:
        """`present`: per side, every snapshot each dataset has or may have when the plan
        ran (planner.cover.present_sides); without it no hold is made recursive.
        `features`: per side, each pool's features as observed (they decide -L, -e, -s)."""
        self.job = job
        self.present = present or {}
        self.pool_features = features or {}
        self.runner = runner
        self.console = console
        self.progress = settings.progress
        self.parallel = max(1, settings.parallel)
        self._board = Board(console.progress, combine=console.err.isatty())

    def _host(self, side: str) -> Host:
        return self.job.source if side == SOURCE else self.job.target

    def _run(self, side: str, argv: list[str]) -> None:
        self.runner.run(self._host(side), argv, label=_label(side))

    def features(self, action: Send) -> commands.SendFeatures:
        """Features both pools of a send have decide -L and -e; the target's, -s."""
        empty: Mapping[str, frozenset[str]] = {}
        source = self.pool_features.get(SOURCE, empty).get(
            action.source_dataset.split("/")[0], frozenset()
        )
        target = self.pool_features.get(TARGET, empty).get(
            action.target_dataset.split("/")[0], frozenset()
        )
        both = source & target
        return commands.SendFeatures(
            large_blocks="large_blocks" in both,
            embedded_data="embedded_data" in both,
            resumable="extensible_dataset" in target,
        )

    def _watch(self, action: Send, stages: list[Stage]) -> Optional[Progress]:
        if not self.progress:
            return None
        job = self.job
        processes = len(group_stages(stages))
        count: Optional[tuple[int, str]] = None
        if job.target.is_local:
            count = (processes - 1, "rchar")  # what zfs recv read
        elif job.source.is_local:
            count = (processes - 2, "wchar")  # what the last stage here handed to ssh
        title = f"[Target] {action.target_dataset}@{action.snapshot}"
        return Progress(title, self._board.channel(), count=count)

    def _send(self, action: Send) -> None:
        job = self.job
        features = self.features(action)
        stages = transfer.pipeline(
            job.source,
            job.target,
            commands.send_argv(action, job, features, self.progress),
            commands.recv_argv(action, job, features),
            job.transfer,
        )
        watch = self._watch(action, stages)
        if not job.ignore_transfer_errors:
            self.runner.pipeline(stages, watch=watch)
            return
        result = self.runner.pipeline(stages, check=False, watch=watch)
        if result.ok:
            return
        # --ignore-transfer-errors: fine as long as the snapshot arrived
        name = f"{action.target_dataset}@{action.snapshot}"
        found = self.runner.run(
            self.job.target,
            ["zfs", "list", "-H", "-o", "name", name],
            label="[Target]",
            check=False,
        )
        if found.returncode != 0:
            raise ZfsError(f"transfer failed and {name} did not arrive: {result.stderrs}")
        self.console.warning(f"[Target] {name}: ignoring transfer errors, the snapshot arrived")

    def _announce_send(self, action: Send) -> None:
        what = {"full": "receiving full", "incremental": "receiving incremental",
                "resume": "resuming"}[action.mode]  # fmt: skip
        for snap in action.snapshots:
            self.console.verbose(f"[Target] {action.target_dataset}@{snap}: {what}")

    def _start(self, action: Action) -> Callable[[], None]:
        """Announce a send or destroy here (in plan order); the returned call does it."""
        if isinstance(action, Send):
            self._announce_send(action)
            return lambda: self._send(action)
        assert isinstance(action, Destroy)
        self._announce_destroy(action)
        return lambda: self._destroy(action)

    def _announce_destroy(self, action: Destroy) -> None:
        for snap in action.snapshots:
            self.console.verbose(f"{_label(action.side)} {action.dataset}@{snap}: Destroying")

    def _destroy(self, action: Destroy) -> None:
        """Required destroys raise; thinning destroys never do: what zfs refuses as a
        batch is retried one snapshot at a time, and what it still refuses is reported."""
        for argv, snapshots in commands.destroy_argvs(action):
            try:
                self._run(action.side, argv)
            except ReconcileError:
                if action.required:
                    raise
                for snap, one in zip(snapshots, commands.single_destroy_argvs(action, snapshots)):
                    self._destroy_one(action, snap, one)

    def _destroy_one(self, action: Destroy, snap: str, argv: list[str]) -> None:
        try:
            self._run(action.side, argv)
        except DatasetNotFound:
            pass  # gone already: that is what was wanted
        except ReconcileError as exc:
            self.console.error(
                f"{_label(action.side)} {action.dataset}@{snap}: can't destroy it ({exc}); "
                "the backup goes on"
            )

    def _release(self, action: Release) -> None:
        """A release that fails is reported; it never fails the dataset (a hold that
        stays only keeps a snapshot longer)."""
        try:
            self._run(action.side, commands.release_argv(action))
        except ReconcileError as exc:
            if not commands.is_done(action, exc):
                self.console.error(
                    f"{_label(action.side)} {action.dataset}@{action.snapshot}: can't "
                    f"release {action.tag} ({exc}); the backup goes on"
                )

    def _mount(self, action: Mount) -> None:
        """Mount a filesystem received for the first time, where 3.3 would (never fails
        the dataset)."""
        try:
            out = self.runner.run(self.job.target, commands.mount_argv(action), label="[Target]")
        except ReconcileError as exc:
            self.console.error(f"[Target] {action.dataset}: can't mount it ({exc})")
            return
        if out.stdout.strip():
            self.console.verbose(f"[Target] {action.dataset}: {out.stdout.strip()}")

    def perform(self, action: Action) -> None:
        say = self.console.verbose
        if isinstance(action, CreateSnapshots):
            say(f"[Source] Creating snapshots {action.snapshot} in pool {action.pool}")
            self._run(SOURCE, commands.snapshot_argv(action, self.job))
        elif isinstance(action, CreateParent):
            say(f"[Target] {action.dataset}: Creating unmountable parent")
            self._run(action.side, commands.create_parent_argv(action))
        elif isinstance(action, Mount):
            self._mount(action)
        elif isinstance(action, AbortResume):
            say(f"[Target] {action.dataset}: {action.reason}")
            self._run(action.side, commands.abort_resume_argv(action))
        elif isinstance(action, Rollback):
            say(f"[Target] {action.dataset}: Rolling back to @{action.snapshot}")
            self._run(action.side, commands.rollback_argv(action))
        elif isinstance(action, Destroy):
            self._announce_destroy(action)
            self._destroy(action)
        elif isinstance(action, DestroyDataset):
            say(f"[Target] {action.dataset}: Destroying (missing on source)")
            self._run(action.side, commands.destroy_dataset_argv(action))
        elif isinstance(action, Hold):  # (batched by _hold_step, which says so)
            self._run(action.side, commands.hold_argv(action))
        elif isinstance(action, Release):
            self._release(action)
        elif isinstance(action, Send):
            self._announce_send(action)
            self._send(action)
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {action!r}")

    def execute(
        self,
        plan: Plan,
        *,
        stop_on_error: bool = False,
        before_first: Optional[Callable[[Action], None]] = None,
    ) -> Outcome:
        if any(isinstance(a, Send) for a in plan.actions):
            transfer.check_helpers(self.runner, self.job.source, self.job.target, self.job.transfer)
        run = _Run(failed={p.unit: None for p in plan.problems})
        snapshot_steps = [i for i, a in enumerate(plan.actions) if isinstance(a, CreateSnapshots)]
        index = 0
        while index < len(plan.actions):
            action = plan.actions[index]
            if before_first:
                before_first(action)
            if snapshot_steps and index == snapshot_steps[0] and not self._snapshot_cmds("pre"):
                for i in snapshot_steps:
                    run.broken.add(i)
                    run.fail(plan.actions[i])
            if isinstance(action, (Hold, Release)):
                batch = _same_kind_run(plan, index)
                ok = self._hold_step(plan, batch, run)
            elif isinstance(action, (Send, Destroy)) and self.parallel > 1 and not stop_on_error:
                batch = _parallel_run(plan, index)
                ok = self._parallel_steps(plan, batch, run)
            else:
                batch = [index]
                ok = self._step(plan, index, run)
            if snapshot_steps and index <= snapshot_steps[-1] <= batch[-1]:
                # after the last snapshot, whether it worked or not (as v3)
                self._snapshot_cmds("post")
            if not ok and stop_on_error:
                break
            index = batch[-1] + 1
        return Outcome(tuple(run.failed), run.executed, run.skipped)

    def _skipped(self, plan: Plan, index: int, run: _Run) -> bool:
        """Skip (and say why) an action whose dataset or dependency failed."""
        action = plan.actions[index]
        blocked = [d for d in plan.depends[index] if d in run.broken]
        # a dataset that failed stops its own actions; a pool's snapshot still covers the
        # others (as v3: snapshots are taken before anything is sent); a dataset that can't
        # be sent is still thinned (as v3, which thins before it finds out)
        unit_failed = (
            not isinstance(action, CreateSnapshots)
            and not _independent(action)
            and action.unit in run.failed
        )
        if not (blocked or index in run.broken or unit_failed):
            return False
        run.broken.add(index)
        run.skipped += 1
        if blocked and not any(u in run.failed for u in _units(action)):
            cause = plan.actions[blocked[0]]
            self.console.error(
                f"{_label(action.side)} {_dataset(action)}: skipped, "
                f"because {_dataset(cause)} failed"
            )
            run.fail(action)
        return True

    def _failed(self, action: Action, index: int, run: _Run, exc: ReconcileError) -> None:
        run.broken.add(index)
        run.fail(action)
        self.console.error(f"{_label(action.side)} {_dataset(action)}: FAILED: {exc}")

    def _step(self, plan: Plan, index: int, run: _Run) -> bool:
        """Run one action unless something it needs failed; False if it failed."""
        if self._skipped(plan, index, run):
            return True
        action = plan.actions[index]
        try:
            self.perform(action)
        except ReconcileError as exc:
            self._failed(action, index, run, exc)
            return False
        run.executed += 1
        return True

    def _parallel_steps(self, plan: Plan, batch: list[int], run: _Run) -> bool:
        """Consecutive sends (or snapshot destroys), `parallel` at a time; False if one
        failed. Each waits for zfs (a receive, a destroy) to commit a transaction group:
        run side by side, they share them."""
        waiting = list(batch)
        pending = set(batch)
        running: dict[Future[None], int] = {}
        ok = True
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="zfs") as pool:
            while waiting or running:
                # in plan order: a dataset's sends one after the other, dependencies first
                held: set[str] = {plan.actions[i].unit for i in running.values()}
                for i in list(waiting):
                    if len(running) >= self.parallel:
                        break
                    action = plan.actions[i]
                    if action.unit in held or any(d in pending for d in plan.depends[i]):
                        held.add(action.unit)
                        continue
                    waiting.remove(i)
                    if self._skipped(plan, i, run):
                        pending.discard(i)
                        continue
                    running[pool.submit(self._start(action))] = i
                    held.add(action.unit)
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    i = running.pop(future)
                    pending.discard(i)
                    exc = future.exception()
                    if exc is None:
                        run.executed += 1
                    elif isinstance(exc, ReconcileError):
                        self._failed(plan.actions[i], i, run, exc)
                        ok = False
                    else:
                        raise exc
        return ok

    def _hold_step(self, plan: Plan, batch: list[int], run: _Run) -> bool:
        """Holds (or releases) of one side and tag, batched: `zfs hold|release -r TAG`
        for the subtrees where that is exact (planner.cover), and `zfs hold|release TAG
        ...` for the rest, split over up to `parallel` commands side by side when there
        are many (zfs holds each of those in its own transaction group: side by side they
        share them). What a failed command was about is retried one snapshot at a time,
        so only the dataset that fails counts as failed."""
        ready = [i for i in batch if not self._skipped(plan, i, run)]
        if not ready:
            return True
        first = plan.actions[ready[0]]
        assert isinstance(first, (Hold, Release))
        verb = "hold" if isinstance(first, Hold) else "release"
        names: dict[str, int] = {}
        for i in ready:
            action = plan.actions[i]
            assert isinstance(action, (Hold, Release))
            name = f"{action.dataset}@{action.snapshot}"
            names[name] = i
            self.console.debug(f"{_label(action.side)} {name}: {verb}ing")
        present = self.present.get(first.side)
        grouped = cover(names, present) if present is not None else Cover({}, tuple(names))
        budget = ARG_BYTES - len(first.tag) - 3
        #: (arguments after the verb, the snapshots they stand for)
        commands_: list[tuple[list[str], list[str]]] = [
            (["-r", first.tag, *chunk], [n for root in chunk for n in grouped.covered[root]])
            for chunk in chunked(grouped.recursive, budget=budget)
        ]
        commands_ += [
            ([first.tag, *part], part)
            for chunk in chunked(grouped.single, budget=budget)
            for part in _split(chunk, self.parallel, at_least=HOLDS_PER_COMMAND)
        ]

        def one(args: list[str]) -> bool:
            try:
                self._run(first.side, ["zfs", verb, *args])
            except ReconcileError:
                return False
            return True

        if len(commands_) == 1:
            done = [one(commands_[0][0])]
        else:
            with ThreadPoolExecutor(min(len(commands_), self.parallel), "zfs") as pool:
                done = list(pool.map(one, [args for args, _ in commands_]))
        ok = True
        for (_, about), worked in zip(commands_, done):
            if worked:
                run.executed += len(about)
                continue
            for name in about:
                ok = self._hold_one(plan, names[name], run) and ok
        return ok

    def _hold_one(self, plan: Plan, index: int, run: _Run) -> bool:
        """One hold (release) after its batch failed. zfs goes on past a failing snapshot,
        so this one may be done already: a hold whose tag exists (a release whose tag is
        gone) counts as done. A release never fails the dataset (see _release)."""
        action = plan.actions[index]
        if isinstance(action, Release):
            self._release(action)
            run.executed += 1
            return True
        assert isinstance(action, Hold)
        try:
            self._run(action.side, commands.hold_argv(action))
        except ReconcileError as exc:
            if not commands.is_done(action, exc):
                self._failed(action, index, run, exc)
                return False
        run.executed += 1
        return True

    def _snapshot_cmds(self, when: str) -> bool:
        """Run --pre/--post-snapshot-cmd on the source; False if one failed."""
        cmds = self.job.pre_snapshot_cmds if when == "pre" else self.job.post_snapshot_cmds
        for argv in cmds:
            self.console.verbose(f"[Source] Running {when}-snapshot-cmd")
            try:
                self.runner.run(self.job.source, list(argv), label="[Source]")
            except ReconcileError as exc:
                self.console.error(f"[Source] {when}-snapshot-cmd failed: {exc}")
                return False
        return True


@attrs.define
class _Run:
    #: units (datasets) that failed, in order
    failed: dict[str, None]
    #: indexes of actions that failed or were skipped
    broken: set[int] = attrs.Factory(set)
    executed: int = 0
    skipped: int = 0

    def fail(self, action: Action) -> None:
        for unit in _units(action):
            self.failed[unit] = None


def _split(items: list[str], parts: int, at_least: int) -> list[list[str]]:
    """`items` in up to `parts` slices of at least `at_least` items (the last may be short)."""
    count = max(1, min(parts, len(items) // at_least))
    size = -(-len(items) // count)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _same_kind_run(plan: Plan, index: int) -> list[int]:
    """Indexes of the holds (or releases) from `index` on with the same side and tag."""
    first = plan.actions[index]
    assert isinstance(first, (Hold, Release))
    run = [index]
    for i in range(index + 1, len(plan.actions)):
        action = plan.actions[i]
        if type(action) is not type(first) or action.side != first.side:
            break
        assert isinstance(action, (Hold, Release))
        if action.tag != first.tag or any(d in run for d in plan.depends[i]):
            break
        run.append(i)
    return run


def _parallel_run(plan: Plan, index: int) -> list[int]:
    """Indexes of the consecutive actions of the same kind (sends, destroys) from `index` on."""
    kind = type(plan.actions[index])
    end = index
    while end < len(plan.actions) and type(plan.actions[end]) is kind:
        end += 1
    return list(range(index, end))


def _independent(action: Action) -> bool:
    """Thinning, releases and mounts never block, and are never blocked by a dataset's
    other trouble, only by what they depend on (a mount by its dataset's first receive,
    as 3.3 mounts right after it)."""
    thinning = isinstance(action, Destroy) and not action.required
    return thinning or isinstance(action, (Release, Mount))


def _units(action: Action) -> tuple[str, ...]:
    """The datasets whose failure an action counts as (a snapshot: all of its datasets)."""
    if isinstance(action, CreateSnapshots):
        return action.datasets
    return (action.unit,)


def _dataset(action: Action) -> str:
    if isinstance(action, CreateSnapshots):
        return f"pool {action.pool}"
    return action.dataset
