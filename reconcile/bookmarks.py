"""Bookmarks: their names, which are ours, and the one a target's chain rests on. Pure.

A bookmark keeps what an incremental send needs of a snapshot (its guid and createtxg)
without the snapshot's data: once the target has a snapshot, a bookmark of it on the
source is enough to send the next one incrementally, however the source is thinned.

Names are zfs-autobackup 4.0rc2's: `DATASET#SNAPSHOT__TAG`, where SNAPSHOT is our
snapshot's name and TAG the decimal guid of the target path dataset, so every target of
one source has its own bookmark:

    pool/data@offsite1-20260102000000  ->  pool/data#offsite1-20260102000000__8419732213
"""

from __future__ import annotations

from typing import Optional

import attrs

from reconcile.model import Bookmark, Dataset, Snapshot
from reconcile.naming import Naming

SEPARATOR = "__"


def bookmark_name(snapshot: str, tag: str) -> str:
    return f"{snapshot}{SEPARATOR}{tag}"


@attrs.frozen
class Ours:
    """A bookmark made by this backup (or by zfs-autobackup 4.0rc2 for it)."""

    bookmark: Bookmark
    snapshot: str
    tag: str


def ours(naming: Naming, bookmark: Bookmark, tag: Optional[str] = None) -> Optional[Ours]:
    """The snapshot name and tag of one of our bookmarks: of a snapshot of ours, or of
    any snapshot with this target's `tag` (a foreign common snapshot of
    --other-snapshots); None for any other bookmark."""
    snapshot, sep, found = bookmark.name.rpartition(SEPARATOR)
    if not sep or not found.isdigit() or not snapshot:
        return None
    if not naming.is_ours(snapshot) and found != tag:
        return None
    return Ours(bookmark, snapshot, found)


def base(
    source: Dataset, target: Dataset, tag: Optional[str], naming: Naming
) -> Optional[tuple[Bookmark, Snapshot]]:
    """(source bookmark, target snapshot): the newest target snapshot whose guid is a
    source bookmark's (ours of this tag first, then any other bookmark of that guid:
    another tag's, another tool's)."""
    by_guid: dict[int, Bookmark] = {}
    for mark in source.bookmarks:
        mine = ours(naming, mark, tag)
        preferred = mine is not None and mine.tag == tag
        if mark.guid not in by_guid or preferred:
            by_guid[mark.guid] = mark
    for snap in reversed(target.snapshots):
        if snap.guid in by_guid:
            return by_guid[snap.guid], snap
    return None


@attrs.frozen
class Other:
    """A bookmark of ours with another target's tag: kept, or destroyed as an orphan."""

    bookmark: Bookmark
    tag: str
    #: seconds since its snapshot was taken (the time in its name)
    age: float
    #: --destroy-orphan-bookmarks: older than the deadline, it goes
    orphan: bool


def others(
    source: Dataset,
    tag: str,
    naming: Naming,
    now: float,
    deadline: Optional[float],
    keep: Optional[str] = None,
) -> tuple[Other, ...]:
    """Our bookmarks of `source` whose tag is not this run's `tag`: another target's, or a
    target that is gone (one run sees its own target only, so which is which is told by
    age). With a `deadline` (seconds) those whose snapshot is older are orphans; `keep`
    (the bookmark this target's chain rests on) never is."""
    found = []
    for mark in source.bookmarks:
        mine = ours(naming, mark, tag)
        if mine is None or mine.tag == tag:
            continue
        stamp = naming.timestamp(mine.snapshot)
        assert stamp is not None  # (another tag's are ours by their snapshot's name)
        age = now - stamp
        orphan = deadline is not None and age > deadline and mark.name != keep
        found.append(Other(mark, mine.tag, age, orphan))
    return tuple(found)
