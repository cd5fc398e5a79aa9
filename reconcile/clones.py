"""Clones: a selected clone arrives on the target as a clone of its origin. Pure.

A clone shares its origin's blocks; sent in full, the target stores them again (a 6.3 GB
root became 17.3 GB: zfs_autobackup #284). Its first send is instead

    zfs send -i pool/origin@snap pool/clone@first

when the target has the origin snapshot (its guid, anywhere under the target path), or
when this run sends it there first (the origin dataset is selected: its pair is told to
send that snapshot even where the target schedule would skip it). `zfs recv` then makes
the target dataset a clone of that snapshot. Otherwise the clone is sent in full, and
the plan says why. Only the first send differs: an existing target dataset goes on as
it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Optional

import attrs

from reconcile.job import Transfer
from reconcile.model import Dataset, HostState, Snapshot


@attrs.frozen
class Origin:
    """What a new clone on the target is sent from."""

    #: the source's origin snapshot, `DATASET@SNAPSHOT`
    snapshot: str
    guid: int
    #: the origin's source dataset when this run sends that snapshot first (None: the
    #: target has it already)
    sent_by: Optional[str] = None

    @property
    def dataset(self) -> str:
        return self.snapshot.partition("@")[0]

    @property
    def name(self) -> str:
        return self.snapshot.partition("@")[2]


def order(datasets: Sequence[Dataset]) -> list[Dataset]:
    """`datasets` with every origin's dataset before its clones (otherwise as given)."""
    by_name = {ds.name: ds for ds in datasets}
    done: set[str] = set()
    result: list[Dataset] = []

    def visit(ds: Dataset, path: frozenset[str]) -> None:
        if ds.name in done or ds.name in path:
            return
        origin = by_name.get(ds.origin.partition("@")[0]) if ds.origin else None
        if origin is not None:
            visit(origin, path | {ds.name})
        done.add(ds.name)
        result.append(ds)

    for ds in datasets:
        visit(ds, frozenset())
    return result


def lineage(source: HostState, ds: Dataset) -> Iterator[tuple[str, Snapshot]]:
    """The snapshots `ds` descends from, newest first: its origin, the origin dataset's
    snapshots before it, then that dataset's origin, and so on (zfs sends a clone
    incrementally from any of them)."""
    seen: set[str] = set()
    origin = ds.origin
    while origin and origin not in seen:
        seen.add(origin)
        name, _, snap = origin.partition("@")
        ods = source.get(name)
        at = next((i for i, s in enumerate(ods.snapshots) if s.name == snap), None) if ods else None
        if ods is None or at is None:
            return
        for earlier in reversed(ods.snapshots[: at + 1]):
            yield f"{name}@{earlier.name}", earlier
        origin = ods.origin


def promoted_away(source: HostState, ds: Dataset, target: HostState, tds: Dataset) -> Optional[str]:
    """Why the clone `ds` has no common snapshot with its target `tds`, when `zfs
    promote` moved its snapshots away: the message, with the fix; None when its origin
    is nowhere on the target. (zfs sends from another dataset's snapshot only as a clone
    stream, which no existing dataset receives: "cannot receive new filesystem stream:
    destination exists", measured.)"""
    assert ds.origin is not None
    origin = next((snap for full, snap in lineage(source, ds) if full == ds.origin), None)
    if origin is None:
        return None
    there = next((f"{t.name}@{s.name}" for t in target for s in t.snapshots
                  if s.guid == origin.guid), None)  # fmt: skip
    if there is None:
        return None
    clones = (
        [t.name for t in target if t.origin == there] if there.startswith(tds.name + "@") else []
    )
    promote = f"zfs promote {clones[0]}, then " if clones else ""
    children = [t.name for t in target if t.parent == tds.name]
    if children:
        promote = (
            f"(its children go too, and are sent again in full: {', '.join(children)}) " + promote
        )
    return (
        f"{ds.name} was promoted away: its older snapshots now belong to "
        f"{ds.origin.partition('@')[0]}, and none of its own is on the target. On the "
        f"target: {promote}zfs destroy -r {tds.name} (it loses the snapshots the source no "
        f"longer has); the next run sends it as a clone of the origin there, with only "
        "what changed."
    )


def find(
    transfer: Transfer,
    ds: Dataset,
    source: HostState,
    target: HostState,
    targets: Mapping[str, str],
) -> tuple[Optional[Origin], Optional[str]]:
    """(where a new clone is sent from, why it is sent in full instead); (None, None)
    when `ds` is no clone, or clones are not wanted. An existing target dataset goes on
    as it is."""
    if not transfer.send or ds.origin is None:
        return None, None
    origin_ds, _, name = ds.origin.partition("@")
    ods = source.get(origin_ds)
    snap = ods.snapshot(name) if ods is not None else None
    tds = target.get(targets[ds.name])
    if not transfer.clones or (tds is not None and tds.snapshots):
        return None, None
    if snap is None:
        return None, f"its origin {ds.origin} is not selected"
    if any(s.guid == snap.guid for t in target for s in t.snapshots):
        return Origin(ds.origin, snap.guid), None
    if origin_ds not in targets:
        return None, f"its origin {ds.origin} is not on the target, and its dataset is not selected"
    if any(re.search(p, ds.origin) for p in transfer.exclude_snapshot_patterns):
        return None, f"its origin {ds.origin} matches --exclude-snapshot-pattern"
    return Origin(ds.origin, snap.guid, sent_by=origin_ds), None
