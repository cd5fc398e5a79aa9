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
"""

from __future__ import annotations

from collections.abc import Iterator

from planner.actions import SOURCE, TARGET, Destroy, DestroyDataset, Rollback, Send
from planner.plan import Plan
from reconcile.desire import Desired
from reconcile.errors import PlanRefused
from reconcile.job import Job


def _ancestors(plan: Plan, index: int) -> Iterator[int]:
    seen: set[int] = set()
    todo = list(plan.depends[index])
    while todo:
        i = todo.pop()
        if i not in seen:
            seen.add(i)
            yield i
            todo.extend(plan.depends[i])


def check(plan: Plan, job: Job, desired: Desired) -> None:
    """Raise PlanRefused naming the first broken invariant."""
    commons: dict[tuple[str, str], str] = {}
    finals: dict[tuple[str, str], str] = {}
    incompatible: dict[str, set[str]] = {}
    targets = {pair.target_name for pair in desired.pairs}
    for pair in desired.pairs:
        if pair.common:
            commons[(SOURCE, pair.name)] = pair.common[0]
            commons[(TARGET, pair.target_name)] = pair.common[1]
        if pair.final_common:
            finals[(SOURCE, pair.name)] = pair.final_common
            finals[(TARGET, pair.target_name)] = pair.final_common
        incompatible[pair.target_name] = set(pair.incompatible)

    for index, action in enumerate(plan.actions):
        if isinstance(action, Destroy):
            key = (action.side, action.dataset)
            for snap in action.snapshots:
                where = f"{action.side} {action.dataset}@{snap}"
                if finals.get(key) == snap:
                    raise PlanRefused(f"BUG: the plan destroys the newest common snapshot {where}")
                if commons.get(key) == snap:
                    sent_before = any(
                        isinstance(plan.actions[a], Send) and plan.actions[a].unit == action.unit
                        for a in _ancestors(plan, index)
                    )
                    if not sent_before:
                        raise PlanRefused(
                            f"BUG: the plan destroys the common snapshot {where} "
                            "before a newer one was sent"
                        )
                ours = job.naming.is_ours(snap)
                allowed = (
                    action.side == TARGET
                    and job.destroy_incompatible
                    and snap in incompatible.get(action.dataset, set())
                )
                if not ours and not allowed:
                    raise PlanRefused(
                        f"BUG: the plan destroys {where}, which is not a snapshot of this backup"
                    )
        elif isinstance(action, Rollback) and not (job.rollback or job.destroy_incompatible):
            raise PlanRefused(f"BUG: the plan rolls back {action.dataset} without --rollback")
        elif isinstance(action, DestroyDataset):
            if job.destroy_missing is None:
                raise PlanRefused(
                    f"BUG: the plan destroys {action.dataset} without --destroy-missing"
                )
            if action.dataset in targets:
                raise PlanRefused(f"BUG: the plan destroys {action.dataset}, a dataset it backs up")
        elif isinstance(action, Send) and action.force and not job.force:
            raise PlanRefused(f"BUG: the plan receives {action.dataset} with -F without --force")
