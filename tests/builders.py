"""Small builders for observed states in pure tests (no ZFS involved).

Guids are derived from a lineage key and the snapshot name, so a target dataset built
with the same lineage holds replicas of the source's snapshots.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Optional

from reconcile import graph as snapgraph
from reconcile.desire import Desired, desire
from reconcile.job import Job
from reconcile.model import Bookmark, Dataset, Host, HostState, ResumeInfo, Selection, Snapshot
from reconcile.naming import Naming
from reconcile.schedule import Schedule


def guid(lineage: str, snap: str) -> int:
    return zlib.crc32(f"{lineage}@{snap}".encode()) + 1


def dataset(
    name: str,
    snaps: Sequence[str] = (),
    *,
    lineage: Optional[str] = None,
    selection: Optional[tuple[str, str]] = None,
    written: int = 0,
    holds: Optional[dict[str, tuple[str, ...]]] = None,
    token: Optional[str] = None,
    kind: str = "filesystem",
    snap_written: Optional[dict[str, int]] = None,
    clones: Optional[dict[str, tuple[str, ...]]] = None,
    encryption: str = "off",
    bookmarks: Optional[dict[str, str]] = None,
    lost: Iterable[str] = (),
) -> Dataset:
    """`bookmarks`: bookmark name -> the snapshot (in `snaps`) it is of; `lost`: snapshots
    of `snaps` that are gone (destroyed after their bookmark was made)."""
    lineage = lineage or name
    holds = holds or {}
    txg = {s: i + 1 for i, s in enumerate(snaps)}
    gone = set(lost)
    return Dataset(
        name=name,
        type=kind,
        guid=guid(lineage, ""),
        written=written,
        resume_token=token,
        encryption=encryption,
        selection=Selection(*selection) if selection else None,
        snapshots=tuple(
            Snapshot(
                dataset=name,
                name=s,
                guid=guid(lineage, s),
                createtxg=i + 1,
                creation=0,
                userrefs=len(holds.get(s, ())),
                holds=holds.get(s, ()),
                written=(snap_written or {}).get(s, 0),
                clones=(clones or {}).get(s, ()),
            )
            for i, s in enumerate(snaps)
            if s not in gone
        ),
        bookmarks=tuple(
            sorted(
                (
                    Bookmark(name, mark, guid(lineage, s), txg[s], 0)
                    for mark, s in (bookmarks or {}).items()
                ),
                key=lambda b: b.createtxg,
            )
        ),
    )


def state(datasets: Iterable[Dataset], host: Optional[Host] = None) -> HostState:
    return HostState(
        host=host or Host(), datasets={ds.name: ds for ds in sorted(datasets, key=lambda d: d.name)}
    )


def job(name: str = "bak", target_path: Optional[str] = "backup", **kwargs: object) -> Job:
    schedules = {
        "keep_source": Schedule.parse(str(kwargs.pop("keep_source", "10,1d1w,1w1m,1m1y"))),
        "keep_target": Schedule.parse(str(kwargs.pop("keep_target", "10,1d1w,1w1m,1m1y"))),
    }
    return Job(naming=Naming.create(name), target_path=target_path, **schedules, **kwargs)  # type: ignore[arg-type]


def run_desire(
    job_: Job,
    source: HostState,
    target: Optional[HostState],
    now: float,
    resume: Optional[dict[str, ResumeInfo]] = None,
) -> Desired:
    return desire(job_, source, target, snapgraph.build(source, target), now, resume or {})
