"""The assumptions a saved plan rests on, and what drifted since. Pure.

A plan records, for every dataset it involves (the selected source datasets and every
dataset under the target path): its snapshots with their guids, the hold tags on them,
and its resume token; and which datasets were selected. Before `apply FILE` executes,
the hosts are observed again and compared: any difference (a snapshot that appeared,
vanished or changed guid, a new hold, a resume token, a dataset created or destroyed, a
changed selection) is drift, and the plan is refused.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Optional

import attrs

from planner.actions import SOURCE, TARGET
from reconcile.desire import Desired
from reconcile.model import Dataset, HostState, Side


@attrs.frozen
class DatasetPrint:
    side: Side
    name: str
    snapshots: dict[str, int] = attrs.field(factory=dict)
    holds: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    resume_token: Optional[str] = None
    #: bytes written since its newest snapshot (a restore's destination: what --force
    #: loses; None: not recorded, as in a backup's plan)
    written: Optional[int] = None


@attrs.frozen
class Assumptions:
    selected: tuple[str, ...] = ()
    datasets: tuple[DatasetPrint, ...] = ()


@attrs.frozen
class Change:
    side: Side
    dataset: str
    change: str


def _print(side: Side, ds: Dataset) -> DatasetPrint:
    return DatasetPrint(
        side=side,
        name=ds.name,
        snapshots={s.name: s.guid for s in ds.snapshots},
        holds={s.name: tuple(sorted(s.holds)) for s in ds.snapshots if s.holds},
        resume_token=ds.resume_token,
    )


def assumptions(desired: Desired, source: HostState, target: Optional[HostState]) -> Assumptions:
    prints = [_print(SOURCE, source.datasets[name]) for name in desired.selected]
    if target is not None:
        prints += [_print(TARGET, ds) for ds in target]
    return Assumptions(tuple(desired.selected), tuple(prints))


def tree_assumptions(
    target: HostState, source: Optional[HostState], names: Collection[str]
) -> Assumptions:
    """A restore's: the datasets of the copy's tree on the target and of the
    destination's on the source host (None: it does not exist) that it restores from
    and into (`names`), with the bytes written on the destinations."""
    prints = [_print(TARGET, ds) for ds in target if ds.name in names]
    prints += [
        attrs.evolve(_print(SOURCE, ds), written=ds.written)
        for ds in source or ()
        if ds.name in names
    ]
    return Assumptions((), tuple(prints))


def _compare(old: DatasetPrint, new: DatasetPrint) -> Iterable[str]:
    for snap, guid in old.snapshots.items():
        if snap not in new.snapshots:
            yield f"snapshot @{snap} was destroyed"
        elif new.snapshots[snap] != guid:
            yield f"snapshot @{snap} is another snapshot now (guid {guid} -> {new.snapshots[snap]})"
    for snap in new.snapshots:
        if snap not in old.snapshots:
            yield f"snapshot @{snap} appeared"
    for snap in sorted(set(old.holds) | set(new.holds)):
        before, after = set(old.holds.get(snap, ())), set(new.holds.get(snap, ()))
        for tag in sorted(after - before):
            yield f"hold '{tag}' appeared on @{snap}"
        for tag in sorted(before - after):
            yield f"hold '{tag}' was released from @{snap}"
    if old.written is not None and new.written is not None and old.written != new.written:
        yield f"{new.written - old.written:+d} bytes written since its newest snapshot"
    if old.resume_token != new.resume_token:
        if new.resume_token and not old.resume_token:
            yield "a resume token appeared (an interrupted receive)"
        elif old.resume_token and not new.resume_token:
            yield "its resume token is gone"
        else:
            yield "its resume token changed"


def drift(old: Assumptions, new: Assumptions) -> list[Change]:
    changes: list[Change] = []
    for name in sorted(set(old.selected) - set(new.selected)):
        changes.append(Change(SOURCE, name, "no longer selected (or destroyed)"))
    for name in sorted(set(new.selected) - set(old.selected)):
        changes.append(Change(SOURCE, name, "newly selected (or created)"))
    before = {(p.side, p.name): p for p in old.datasets}
    after = {(p.side, p.name): p for p in new.datasets}
    for key in sorted(set(before) | set(after)):
        side, name = key
        if key not in after:
            if not (side == SOURCE and name not in new.selected and name in old.selected):
                changes.append(Change(side, name, "dataset vanished"))
        elif key not in before:
            if not (side == SOURCE and name in new.selected and name not in old.selected):
                changes.append(Change(side, name, "dataset appeared"))
        else:
            changes.extend(Change(side, name, text) for text in _compare(before[key], after[key]))
    return changes
