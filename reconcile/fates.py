"""Fates: what thinning decides for one existing snapshot on one side, and why. Pure.

The schedule's verdict (reconcile.thinner) for "our" snapshots, with what overrides it:
a snapshot zfs would refuse to destroy (it has clones, or someone else holds it) is
kept, and the plan says why ("kept: origin of 1 clone: backup/restore").
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional

import attrs

from reconcile.model import Snapshot
from reconcile.naming import Naming
from reconcile.schedule import Schedule
from reconcile.thinner import thin

PRE = "pre"
POST = "post"


@attrs.frozen
class Fate:
    """The decision for one existing snapshot on one side."""

    snapshot: str
    keep: bool
    reason: str
    #: for destroys: PRE (before sending) or POST (after the new common snapshot is held)
    phase: str = PRE
    #: our hold tag is on it (must be released before destroying)
    held_by_us: bool = False
    #: the destroy must succeed before the dataset's sends (incompatible snapshots);
    #: False: thinning, which never blocks sending
    required: bool = False
    #: the schedule drops it, but this keeps it ("origin of 2 clones: ...", "held by ...")
    kept_because: Optional[str] = None


def thin_names(
    schedule: Optional[Schedule],
    names: Sequence[str],
    stamps: Sequence[float],
    now: float,
    *,
    keep_newest: bool = True,
) -> dict[str, tuple[bool, str]]:
    """name -> (keep, reason) for our snapshots, the newest always kept (unless not
    `keep_newest`: a bookmark keeps what the next send needs)."""
    if not names:
        return {}
    if schedule is None:
        return dict.fromkeys(names, (True, "--no-thinning"))
    # a copy: callers change their verdicts
    return dict(_thin_names(schedule, tuple(names), tuple(stamps), now, keep_newest))


@functools.lru_cache(maxsize=256)
def _thin_names(
    schedule: Schedule,
    names: tuple[str, ...],
    stamps: tuple[float, ...],
    now: float,
    keep_newest: bool,
) -> dict[str, tuple[bool, str]]:
    """thin_names, remembered: a pool's datasets are snapshotted together, under the same
    names, so most pairs of a run ask the same question (the same schedule, names, and
    `now`) and get the same verdicts."""
    verdicts = thin(schedule, stamps, now, always={len(names) - 1} if keep_newest else ())
    return {n: (v.keep, v.reason) for n, v in zip(names, verdicts)}


def foreign_holds(naming: Naming, snap: Snapshot) -> list[str]:
    return [tag for tag in snap.holds if tag != naming.hold_tag]


def fate(
    naming: Naming,
    snap: Snapshot,
    keep: bool,
    reason: str,
    phase: str = PRE,
    *,
    required: bool = False,
) -> Fate:
    """A snapshot's fate; one the schedule drops is still kept when zfs would refuse to
    destroy it: it has clones, or someone else holds it."""
    held = naming.hold_tag in snap.holds
    pin = pinned(naming, snap) if not keep else None
    if pin:
        return Fate(snap.name, True, pin, held_by_us=held, kept_because=pin)
    return _shared(snap.name, keep, reason, phase, held, required)


@functools.lru_cache(maxsize=4096)
def _shared(name: str, keep: bool, reason: str, phase: str, held: bool, required: bool) -> Fate:
    """One Fate value for equal decisions: a pool's datasets have snapshots of the same
    names and the same verdicts, and a Fate is frozen."""
    return Fate(name, keep, reason, phase, held_by_us=held, required=required)


def pinned(naming: Naming, snap: Snapshot) -> Optional[str]:
    """Why zfs would refuse to destroy `snap` (None: it would not)."""
    if snap.clones:
        count = len(snap.clones)
        return f"origin of {count} clone{'s' if count > 1 else ''}: {', '.join(snap.clones)}"
    if not snap.holds:
        return None  # (most snapshots: nothing to look at)
    foreign = foreign_holds(naming, snap)
    return f"held by {', '.join(foreign)}" if foreign else None
