"""The session pipeline every mode shares: observe -> select -> desire -> plan -> check ->
compile. Changes nothing (its commands are reads).

The classic run, `plan`, `apply` and `apply FILE` all call `prepare`: both hosts are
read (at the same time unless one at a time is asked for), an invalid selection value
stops everything, the desired state and the plan are computed and checked against the
safety invariants, the pool features the sends need are read (only when there are
sends), and the plan is compiled into the exact commands. What a mode does with the
result (print the v3 log, tables, a plan file; execute) is up to the mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import attrs

from executors.runner import Runner
from planner import compile as compiler
from planner import invariants
from planner.actions import SOURCE, TARGET, Bookmark, Send
from planner.cover import present_sides
from planner.plan import Plan, build_plan
from reconcile import graph as snapgraph
from reconcile.desire import Desired, desire
from reconcile.errors import SelectionError, UsageError
from reconcile.job import Job
from reconcile.model import HostState, ResumeInfo, Side
from reconcile.observe import observe_source, observe_target, pool_features, resume_info


@attrs.frozen
class Prepared:
    source: HostState
    target: Optional[HostState]
    desired: Desired
    plan: Plan
    compiled: compiler.Compiled

    @property
    def features(self) -> dict[Side, Mapping[str, frozenset[str]]]:
        """Per side, each pool's features as observed."""
        sides = {SOURCE: self.source.features}
        if self.target is not None:
            sides[TARGET] = self.target.features
        return sides


def observe_hosts(
    job: Job, runner: Runner, *, together: bool = False
) -> tuple[HostState, Optional[HostState]]:
    """Read the source and the target; `together`: both at once (they are read-only, and
    the target's listing is the longest part of most runs), unless they are the same
    remote host (whose first ssh connection both would race to set up)."""

    def source() -> HostState:
        return observe_source(
            runner,
            job.remote.source,
            job.naming.property_name,
            exclude_paths=job.remote.exclude_paths,
            exclude_received=job.excludes_received,
            bookmarks=job.reads_bookmarks,
        )

    def target() -> Optional[HostState]:
        if not job.remote.target_path:
            return None
        return observe_target(runner, job.remote.target, job.remote.target_path)

    same_remote = job.remote.source.ssh is not None and job.remote.source == job.remote.target
    if not together or not job.remote.target_path or same_remote:
        return source(), target()
    with ThreadPoolExecutor(2, "observe") as pool:
        theirs = pool.submit(target)
        return source(), theirs.result()


def check_selection(desired: Desired) -> None:
    """An invalid selection value stops the run before anything changes (as 3.3: one
    bad value, also inherited, would otherwise turn a backup into a missing dataset)."""
    invalid = [c for c in desired.choices if c.invalid]
    if invalid:
        raise SelectionError(
            "; ".join(f"{c.dataset}: {c.reason}" for c in invalid)
            + ". Nothing was changed: fix the value (zfs set / zfs inherit) and run again."
        )


def nothing_to_select(desired: Desired) -> bool:
    """As 3.3: "No source filesystems selected" only when no dataset has the property
    at all; when every dataset is excluded (--exclude-unchanged, false, ...) the run
    simply has nothing to do."""
    return not desired.selected and all(c.unset for c in desired.choices)


def no_selection(job: Job) -> UsageError:
    return UsageError(
        f"No source filesystems selected, please do a 'zfs set "
        f"{job.naming.property_name}=true' on the source datasets you want to select."
    )


def _with_features(
    runner: Runner, plan: Plan, source: HostState, target: Optional[HostState]
) -> tuple[HostState, Optional[HostState]]:
    """The features of the pools the sends and bookmarks involve (nothing read when
    nothing is sent or bookmarked)."""
    sends = [a for a in plan.actions if isinstance(a, Send)]
    marks = [a.dataset for a in plan.actions if isinstance(a, Bookmark)]
    if sends or marks:
        pools = [a.source_dataset.split("/")[0] for a in sends] + [d.split("/")[0] for d in marks]
        source = pool_features(runner, source, pools, Side.SOURCE.label)
        if target is not None and sends:
            pools = [a.target_dataset.split("/")[0] for a in sends]
            target = pool_features(runner, target, pools, Side.TARGET.label)
    return source, target


def _lacks_bookmarks(source: HostState) -> bool:
    return any(not {"bookmarks", "bookmark_v2"} <= f for f in source.features.values())


@attrs.frozen
class Seen:
    """Both hosts as observed, and what the job wants of them (no plan yet)."""

    source: HostState
    target: Optional[HostState]
    resume: Mapping[str, ResumeInfo]
    graph: snapgraph.SnapshotGraph
    desired: Desired


def observe_and_desire(
    job: Job,
    runner: Runner,
    now: float,
    *,
    together: bool = False,
    snapshot_name: Optional[str] = None,
) -> Seen:
    """Observe both hosts and desire: the start of every mode (a backup, a plan,
    `status`); the selection is checked (a bad value stops here)."""
    source, target = observe_hosts(job, runner, together=together)
    resume = resume_info(runner, job.remote.source, target) if target is not None else {}
    graph = snapgraph.build(source, target)
    desired = desire(job, source, target, graph, now, resume, snapshot_name=snapshot_name)
    check_selection(desired)
    return Seen(source, target, resume, graph, desired)


def prepare(
    job: Job,
    runner: Runner,
    now: float,
    options: compiler.Options,
    *,
    together: bool = False,
    snapshot_name: Optional[str] = None,
) -> Prepared:
    """Observe, plan, check and compile; changes nothing. `snapshot_name`: the new
    snapshot's name when it was fixed before (a saved plan)."""
    seen = observe_and_desire(job, runner, now, together=together, snapshot_name=snapshot_name)
    source, target, desired = seen.source, seen.target, seen.desired
    plan = build_plan(job, desired, source, target)
    invariants.check(plan, job, desired)
    source, target = _with_features(runner, plan, source, target)
    if job.transfer.bookmarks and _lacks_bookmarks(source):
        # (some pool can't bookmark: its datasets are planned again, without bookmarks)
        name = desired.snapshot_name
        desired = desire(job, source, target, seen.graph, now, seen.resume, snapshot_name=name)
        plan = build_plan(job, desired, source, target)
        invariants.check(plan, job, desired)
    facts = compiler.Facts(
        features={SOURCE: source.features, **({TARGET: target.features} if target else {})},
        present=present_sides(plan, job, source, target),
    )
    compiled = compiler.compile_plan(plan, job.transfer_recipe, job.snapshotting, facts, options)
    return Prepared(source, target, desired, plan, compiled)
