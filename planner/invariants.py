"""The safety invariants, checked on every plan before anything runs.

A plan that breaks one is a bug in the planner: it is refused loudly (PlanRefused) and
nothing is executed.

1. The newest common snapshot of a pair is never destroyed on either side, except the
   old one after a newer snapshot was sent (the destroy depends on that send).
2. Nothing on the target is rolled back, received with -F, has snapshots that are not
   ours destroyed, or is destroyed as a dataset, unless the flag that allows it was given
   (and a dataset this run backs up is never destroyed).
4. Only snapshots whose names match this backup's format are destroyed (incompatible
   target snapshots with --destroy-incompatible excepted).
5. A snapshot that is the origin of a clone (observed, or received as one by this plan)
   is never destroyed.
10. With bookmarks: the last source snapshot *or bookmark* whose guid is on the target is
   never destroyed (the newest common snapshot may go once its bookmark exists: the
   bookmark is made before it); bookmarks that are not ours, or that observation did not
   see, are never destroyed; another target's bookmark of ours only as an orphan (with
   --destroy-orphan-bookmarks, older than its deadline, and not this chain's base).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import attrs

from planner.actions import (
    SOURCE,
    TARGET,
    Action,
    Bookmark,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    DestroyDataset,
    Hold,
    Release,
    Rollback,
    Send,
)
from planner.plan import Plan
from reconcile import bookmarks
from reconcile.desire import Desired
from reconcile.errors import PlanRefused
from reconcile.gcpause import paused
from reconcile.job import Job
from reconcile.model import Dataset
from reconcile.pair import PairDesire


def _ancestors(plan: Plan, index: int) -> Iterator[int]:
    seen: set[int] = set()
    todo = list(plan.depends[index])
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            yield i
            todo.extend(plan.depends[i])


def _writes_source(action: Action) -> bool:
    if isinstance(action, (CreateSnapshots, Bookmark, DestroyBookmark)):
        return True
    return isinstance(action, (Destroy, Hold, Release)) and action.side == SOURCE


def _where(action: Destroy, snap: str) -> str:
    """A destroyed snapshot as the refusals name it ("target backup/ds@snap"): made only
    for a refusal."""
    return f"{action.side} {action.dataset}@{snap}"


@paused
def check(plan: Plan, job: Job, desired: Desired) -> None:
    """Raise PlanRefused naming the first broken invariant."""
    commons: dict[tuple[str, str], str] = {}
    finals: dict[tuple[str, str], str] = {}
    incompatible: dict[str, set[str]] = {}
    targets = {pair.target_name for pair in desired.pairs}
    pairs = {pair.name: pair for pair in desired.pairs}
    for pair in desired.pairs:
        if pair.common and not pair.common_bookmark:
            commons[(SOURCE, pair.name)] = pair.common[0]
        if pair.common:
            commons[(TARGET, pair.target_name)] = pair.common[1]
        if pair.final_common:
            finals[(SOURCE, pair.name)] = pair.final_common
            finals[(TARGET, pair.target_name)] = pair.final_common
        incompatible[pair.target_name] = set(pair.incompatible)

    observed = _observed(desired)
    bases = {p.origin.guid for p in desired.pairs if p.origin is not None and p.sends}
    for index, action in enumerate(plan.actions):
        if job.transfer.read_only_source and _writes_source(action):
            raise PlanRefused(f"BUG: the plan changes the read-only source: {action.kind}")
        if isinstance(action, Destroy):
            key = (action.side, action.dataset)
            seen = observed.get(key)
            # name -> the first snapshot of that name (as Dataset.snapshot), made once
            named = {s.name: s for s in reversed(seen.snapshots)} if seen is not None else {}
            final, common = finals.get(key), commons.get(key)
            for snap in action.snapshots:
                found = named.get(snap)
                if found is not None and (found.clones or found.guid in bases):
                    where = _where(action, snap)
                    raise PlanRefused(f"BUG: the plan destroys {where}, the origin of a clone")
                if final == snap and not _bookmarked(plan, index, pairs, snap):
                    where = _where(action, snap)
                    raise PlanRefused(f"BUG: the plan destroys the newest common snapshot {where}")
                if common == snap:
                    sent_before = any(
                        isinstance(plan.actions[a], Send) and plan.actions[a].unit == action.unit
                        for a in _ancestors(plan, index)
                    )
                    if not sent_before and not _bookmarked(plan, index, pairs, snap):
                        raise PlanRefused(
                            f"BUG: the plan destroys the common snapshot {_where(action, snap)} "
                            "before a newer one was sent"
                        )
                if job.naming.is_ours(snap):
                    continue
                allowed = (
                    action.side == TARGET
                    and job.transfer.destroy_incompatible
                    and snap in incompatible.get(action.dataset, set())
                )
                if not allowed:
                    where = _where(action, snap)
                    raise PlanRefused(
                        f"BUG: the plan destroys {where}, which is not a snapshot of this backup"
                    )
        elif isinstance(action, DestroyBookmark):
            _check_destroy_bookmark(plan, index, action, pairs.get(action.unit), job, desired.now)
        elif isinstance(action, Rollback) and not (
            job.transfer.rollback or job.transfer.destroy_incompatible
        ):
            raise PlanRefused(f"BUG: the plan rolls back {action.dataset} without --rollback")
        elif isinstance(action, DestroyDataset):
            if job.thinning.destroy_missing is None:
                raise PlanRefused(
                    f"BUG: the plan destroys {action.dataset} without --destroy-missing"
                )
            if action.dataset in targets:
                raise PlanRefused(f"BUG: the plan destroys {action.dataset}, a dataset it backs up")
        elif isinstance(action, Send) and action.force and not job.transfer.force:
            raise PlanRefused(f"BUG: the plan receives {action.dataset} with -F without --force")


def _observed(desired: Desired) -> dict[tuple[str, str], Dataset]:
    """(side, name) -> each dataset the plan may act on, as observed."""
    seen: dict[tuple[str, str], Dataset] = {}
    for pair in desired.pairs:
        seen[(SOURCE, pair.name)] = pair.source
        if pair.target is not None:
            seen[(TARGET, pair.target_name)] = pair.target
    for missing in desired.missing:
        seen[(TARGET, missing.target.name)] = missing.target
    return seen


def _destroyed(plan: Plan, dataset: str) -> tuple[set[str], set[str]]:
    """(snapshots, bookmarks) of a source dataset that the plan destroys."""
    snaps: set[str] = set()
    marks: set[str] = set()
    for action in plan.actions:
        if isinstance(action, Destroy) and action.side == SOURCE and action.dataset == dataset:
            snaps.update(action.snapshots)
        elif isinstance(action, DestroyBookmark) and action.dataset == dataset:
            marks.add(action.bookmark)
    return snaps, marks


def _survives(plan: Plan, index: int, pair: PairDesire, guid: Optional[int], snap: str) -> bool:
    """After action `index`, the source still has an object of `snap` (guid `guid`) that
    the plan does not destroy: the snapshot, a bookmark of it observed, or one the plan
    makes before that action."""
    source = pair.source
    snaps, marks = _destroyed(plan, source.name)
    if any(s.name == snap and s.name not in snaps for s in source.snapshots):
        return True
    if guid is not None and any(b.guid == guid and b.name not in marks for b in source.bookmarks):
        return True
    return any(
        isinstance(a := plan.actions[i], Bookmark)
        and a.dataset == source.name
        and (a.snapshot == snap or (guid is not None and _guid(pair, a.snapshot) == guid))
        and a.bookmark not in marks
        and _on_target_first(plan, i, pair, a.snapshot)
        for i in _ancestors(plan, index)
    )


def _on_target_first(plan: Plan, index: int, pair: PairDesire, snap: str) -> bool:
    """A snapshot this run sends is bookmarked only after its send (a bookmark of a
    snapshot the target lacks links nothing)."""
    if snap not in {w.snapshot for w in pair.sends}:
        return True
    return any(
        isinstance(a := plan.actions[i], Send) and a.unit == pair.name and snap in a.snapshots
        for i in _ancestors(plan, index)
    )


def _guid(pair: PairDesire, snap: str) -> Optional[int]:
    found = pair.source.snapshot(snap)
    return found.guid if found is not None else None


def _bookmarked(plan: Plan, index: int, pairs: dict[str, PairDesire], snap: str) -> bool:
    """A source destroy of the newest common snapshot is allowed once its bookmark exists
    (with bookmarks only)."""
    action = plan.actions[index]
    assert isinstance(action, Destroy)
    pair = pairs.get(action.unit)
    if action.side != SOURCE or pair is None or pair.bookmark_tag is None:
        return False
    copy = attrs.evolve(pair, source=attrs.evolve(pair.source, snapshots=tuple(
        s for s in pair.source.snapshots if s.name != snap
    )))  # fmt: skip
    return _survives(plan, index, copy, _guid(pair, snap), snap)


def _check_destroy_bookmark(
    plan: Plan,
    index: int,
    action: DestroyBookmark,
    pair: Optional[PairDesire],
    job: Job,
    now: float,
) -> None:
    where = f"{action.dataset}#{action.bookmark}"
    seen = None
    if pair is not None and pair.source.name == action.dataset:
        seen = next((b for b in pair.source.bookmarks if b.name == action.bookmark), None)
    if pair is None or seen is None:
        raise PlanRefused(f"BUG: the plan destroys the bookmark {where}, which was not observed")
    mine = bookmarks.ours(job.naming, seen, pair.bookmark_tag)
    base = pair.common[0] if pair.common and pair.common_bookmark else None
    if mine is not None and pair.bookmark_tag is not None and mine.tag != pair.bookmark_tag:
        _check_orphan(where, mine, job, now, base)
        return
    if pair.bookmark_tag is None or mine is None:
        raise PlanRefused(
            f"BUG: the plan destroys the bookmark {where}, which is not this target's of ours"
        )
    if pair.sends and seen.name == base:
        # the chain rests on it until a newer snapshot was sent and bookmarked
        sent = any(
            isinstance(plan.actions[a], Send) and plan.actions[a].unit == action.unit
            for a in _ancestors(plan, index)
        )
        if not sent:
            raise PlanRefused(
                f"BUG: the plan destroys the bookmark {where}, the chain's base, before a "
                "newer snapshot was sent"
            )
    last = _last_on_target(pair)
    if last is not None and (seen.guid == last[1] or seen.name == base):
        copy = attrs.evolve(pair, source=attrs.evolve(pair.source, bookmarks=tuple(
            b for b in pair.source.bookmarks if b.name != seen.name
        )))  # fmt: skip
        if not _survives(plan, index, copy, last[1], last[0]):
            raise PlanRefused(
                f"BUG: the plan destroys the bookmark {where}, the last source object of "
                "the target's newest snapshot"
            )


def _check_orphan(
    where: str, mine: bookmarks.Ours, job: Job, now: float, base: Optional[str]
) -> None:
    """Another target's bookmark of ours goes only as an orphan: with
    --destroy-orphan-bookmarks, its snapshot older than the deadline, and not the base
    of this target's chain."""
    deadline = job.thinning.destroy_orphan_bookmarks
    stamp = job.naming.timestamp(mine.snapshot)
    if deadline is None or stamp is None or now - stamp <= deadline:
        raise PlanRefused(
            f"BUG: the plan destroys the bookmark {where}, another target's, which is no "
            "orphan older than --destroy-orphan-bookmarks"
        )
    if mine.bookmark.name == base:
        raise PlanRefused(
            f"BUG: the plan destroys the bookmark {where}, the base of this target's chain"
        )


def _last_on_target(pair: PairDesire) -> Optional[tuple[str, Optional[int]]]:
    """(name, guid) of the target's newest common snapshot after the run."""
    if pair.sends:
        return pair.sends[-1].snapshot, pair.sends[-1].guid
    if pair.common and pair.target is not None:
        found = pair.target.snapshot(pair.common[1])
        return pair.common[1], found.guid if found is not None else None
    return None
