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

from executors.listing_store import Store
from executors.runner import Runner
from planner import compile as compiler
from planner import invariants
from planner.actions import (
    SOURCE,
    TARGET,
    Action,
    Bookmark,
    CreateSnapshots,
    Destroy,
    DestroyDataset,
    Rollback,
    Send,
)
from planner.cover import present_sides
from planner.plan import Plan, build_plan
from reconcile import graph as snapgraph
from reconcile.desire import Desired, desire
from reconcile.errors import SelectionError, UsageError
from reconcile.job import Job
from reconcile.listing import reread_snapshots
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
    job: Job, runner: Runner, *, together: bool = False, store: Optional[Store] = None
) -> tuple[HostState, Optional[HostState]]:
    """Read the source and the target; `together`: both at once (they are read-only, and
    the target's listing is the longest part of most runs), unless they are the same
    remote host (whose first ssh connection both would race to set up). `store`: the
    listing cache serves what it may, and keeps what was read."""
    cache = store.cache if store is not None else None

    def source() -> HostState:
        return observe_source(
            runner,
            job.remote.source,
            job.naming.property_name,
            exclude_paths=job.remote.exclude_paths,
            exclude_received=job.excludes_received,
            bookmarks=job.reads_bookmarks,
            cache=cache,
        )

    def target() -> Optional[HostState]:
        if not job.remote.target_path:
            return None
        return observe_target(runner, job.remote.target, job.remote.target_path, cache=cache)

    same_remote = job.remote.source.ssh is not None and job.remote.source == job.remote.target
    if not together or not job.remote.target_path or same_remote:
        mine, theirs = source(), target()
    else:
        with ThreadPoolExecutor(2, "observe") as pool:
            later = pool.submit(target)
            mine, theirs = source(), later.result()
    if store is not None:
        store.seen(Side.SOURCE.label, mine)
        if theirs is not None:
            store.seen(Side.TARGET.label, theirs)
    return mine, theirs


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
    store: Optional[Store] = None,
) -> Seen:
    """Observe both hosts and desire: the start of every mode (a backup, a plan,
    `status`); the selection is checked (a bad value stops here)."""
    source, target = observe_hosts(job, runner, together=together, store=store)
    resume = resume_info(runner, job.remote.source, target) if target is not None else {}
    return _desired(job, source, target, resume, now, snapshot_name)


def _desired(
    job: Job,
    source: HostState,
    target: Optional[HostState],
    resume: Mapping[str, ResumeInfo],
    now: float,
    snapshot_name: Optional[str],
) -> Seen:
    graph = snapgraph.build(source, target)
    desired = desire(job, source, target, graph, now, resume, snapshot_name=snapshot_name)
    check_selection(desired)
    return Seen(source, target, resume, graph, desired)


def _sides(action: Action) -> list[tuple[Side, str]]:
    """The datasets an action changes, with their side (a send only reads its source:
    its bookmark or hold there is an action of its own)."""
    if isinstance(action, CreateSnapshots):
        return [(SOURCE, name) for name in action.datasets]
    if isinstance(action, Send):
        return [(TARGET, action.target_dataset)]
    return [(action.side, action.dataset)]


def _served_destroys(plan: Plan, seen: Seen) -> dict[Side, set[str]]:
    """The datasets the plan destroys in (snapshots, the dataset, a rollback) whose
    snapshots the listing cache served: a hold or a clone made since is not in a cached
    entry, so these are read again before such a plan is kept."""
    served = {SOURCE: seen.source.served, TARGET: seen.target.served if seen.target else set()}
    stale: dict[Side, set[str]] = {}
    for action in plan.actions:
        if isinstance(action, (Destroy, DestroyDataset, Rollback)):
            for side, name in _sides(action):
                if name in served[side]:
                    stale.setdefault(side, set()).add(name)
    return stale


def _without_cached_destroys(
    job: Job, runner: Runner, now: float, seen: Seen, plan: Plan, snapshot_name: Optional[str]
) -> tuple[Seen, Plan]:
    """The plan again, until no destroy in it was decided from the listing cache."""
    while stale := _served_destroys(plan, seen):
        source, target = seen.source, seen.target
        if SOURCE in stale:
            source = reread_snapshots(runner, source, stale[SOURCE], Side.SOURCE.label)
        if TARGET in stale and target is not None:
            target = reread_snapshots(runner, target, stale[TARGET], Side.TARGET.label)
        seen = _desired(job, source, target, seen.resume, now, snapshot_name)
        plan = build_plan(job, seen.desired, source, target)
    return seen, plan


def _keep_listings(
    store: Store, plan: Plan, source: HostState, target: Optional[HostState]
) -> None:
    """Save the listing cache without what this plan changes (read again next run)."""
    touched: dict[Side, set[str]] = {SOURCE: set(), TARGET: set()}
    for action in plan.actions:
        for side, name in _sides(action):
            touched[side].add(name)
    store.forget(source, touched[SOURCE], Side.SOURCE.label)
    if target is not None:
        store.forget(target, touched[TARGET], Side.TARGET.label)
    store.save()


def prepare(
    job: Job,
    runner: Runner,
    now: float,
    options: compiler.Options,
    *,
    together: bool = False,
    snapshot_name: Optional[str] = None,
    store: Optional[Store] = None,
) -> Prepared:
    """Observe, plan, check and compile; changes nothing. `snapshot_name`: the new
    snapshot's name when it was fixed before (a saved plan). `store`: the listing cache
    (saved once the plan is made, without what the plan changes)."""
    seen = observe_and_desire(
        job, runner, now, together=together, snapshot_name=snapshot_name, store=store
    )
    plan = build_plan(job, seen.desired, seen.source, seen.target)
    seen, plan = _without_cached_destroys(job, runner, now, seen, plan, snapshot_name)
    invariants.check(plan, job, seen.desired)
    source, target = _with_features(runner, plan, seen.source, seen.target)
    if job.transfer.bookmarks and _lacks_bookmarks(source):
        # (some pool can't bookmark: its datasets are planned again, without bookmarks)
        name = seen.desired.snapshot_name
        seen = _desired(job, source, target, seen.resume, now, name)
        plan = build_plan(job, seen.desired, source, target)
        seen, plan = _without_cached_destroys(job, runner, now, seen, plan, name)
        source, target = seen.source, seen.target
        invariants.check(plan, job, seen.desired)
    desired = seen.desired
    if store is not None:
        _keep_listings(store, plan, source, target)
    facts = compiler.Facts(
        features={SOURCE: source.features, **({TARGET: target.features} if target else {})},
        present=present_sides(plan, job, source, target),
    )
    compiled = compiler.compile_plan(plan, job.transfer_recipe, job.snapshotting, facts, options)
    return Prepared(source, target, desired, plan, compiled)
