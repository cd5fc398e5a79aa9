"""Recursive holds: which `zfs hold -r` (or `release -r`) commands do exactly what a
batch of single holds asks, and no more. Pure.

`zfs hold TAG a@s b@s ...` holds each snapshot in its own transaction group (one wait
for the pool to sync per snapshot); `zfs hold -r TAG a@s` gathers a@s and every
descendant's @s into one. The two are the same only when every descendant of `a` that
has (or may have, by the time the holds run) a snapshot named `s` is in the batch; then
`a@s` stands for all of them. Anything less certain stays a single hold. Destroys are
never made recursive: a snapshot that appeared after observation must not go with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

import attrs

from planner.actions import SOURCE, TARGET, CreateSnapshots, Send
from planner.plan import Plan
from reconcile.job import Job
from reconcile.model import HostState, Side

#: dataset -> names of the snapshots it has or may have
Present = Mapping[str, frozenset[str]]


@attrs.frozen
class Cover:
    #: `ROOT@snap` (an argument of one `-r` command) -> the snapshots it stands for
    covered: Mapping[str, tuple[str, ...]]
    #: the rest, as single snapshots
    single: tuple[str, ...]

    @property
    def recursive(self) -> tuple[str, ...]:
        return tuple(self.covered)


def present_after(plan: Plan, side: Side, state: Optional[HostState]) -> dict[str, frozenset[str]]:
    """Every snapshot a side has (as observed) or may have once the plan ran: snapshots
    it takes (source) or receives (target). Destroyed ones stay in: more is safer here."""
    found: dict[str, set[str]] = {}
    if state is not None:
        for ds in state:
            found[ds.name] = {s.name for s in ds.snapshots}
    for action in plan.actions:
        if side == SOURCE and isinstance(action, CreateSnapshots):
            for name in action.datasets:
                found.setdefault(name, set()).add(action.snapshot)
        elif side == TARGET and isinstance(action, Send):
            found.setdefault(action.target_dataset, set()).update(
                (*action.intermediates, action.snapshot)
            )
    return {name: frozenset(snaps) for name, snaps in found.items()}


def _descendants(present: Present) -> dict[str, list[str]]:
    """dataset -> its descendants among `present` (sorted)."""
    names = sorted(present)
    result: dict[str, list[str]] = {name: [] for name in names}
    for i, name in enumerate(names):
        prefix = name + "/"
        for other in names[i + 1 :]:
            if not other.startswith(prefix):
                if other > prefix:
                    break
                continue
            result[name].append(other)
    return result


def cover(names: Iterable[str], present: Present) -> Cover:
    """Group `DATASET@SNAP` names into `-r` roots where that is exact (see above)."""
    wanted: dict[str, set[str]] = {}
    order: list[str] = []
    for full in names:
        dataset, _, snap = full.partition("@")
        wanted.setdefault(snap, set()).add(dataset)
        order.append(full)
    below = _descendants(present)
    covered: dict[str, tuple[str, ...]] = {}
    taken: set[str] = set()
    for snap, datasets in wanted.items():
        roots: list[str] = []
        for dataset in sorted(datasets):
            if any(dataset.startswith(root + "/") for root in roots):
                continue
            kin = [d for d in below.get(dataset, []) if snap in present[d]]
            if not kin or dataset not in present or any(d not in datasets for d in kin):
                continue  # nothing to gather, or a descendant's @snap must stay as it is
            roots.append(dataset)
            members = (f"{dataset}@{snap}", *(f"{d}@{snap}" for d in kin))
            covered[members[0]] = members
            taken.update(members)
    single = tuple(full for full in order if full not in taken)
    return Cover(covered, single)


def present_sides(
    plan: Plan, job: Job, source: HostState, target: Optional[HostState]
) -> dict[Side, dict[str, frozenset[str]]]:
    """present_after for the source and (when there is one) the target. On one host the
    two share one namespace (a target path inside the source tree, or the other way
    round): each side then counts what the other has or receives as well."""
    sides = {SOURCE: present_after(plan, SOURCE, source)}
    if target is not None:
        sides[TARGET] = present_after(plan, TARGET, target)
        if job.remote.source == job.remote.target:
            both: dict[str, frozenset[str]] = dict(sides[SOURCE])
            for name, snaps in sides[TARGET].items():
                both[name] = both.get(name, frozenset()) | snaps
            sides = {SOURCE: both, TARGET: both}
    return sides
