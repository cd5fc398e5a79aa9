"""Small builders for observed states in pure tests (no ZFS involved).

Guids are derived from a lineage key and the snapshot name, so a target dataset built
with the same lineage holds replicas of the source's snapshots.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Optional

import attrs

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


#: Job's parts (all but naming), with their classes
_PARTS = attrs.fields(attrs.resolve_types(Job))[1:]
#: the names the command line's options had in the flat Job, as its parts call them
_RENAMED = {
    "snapshot_properties": "properties",
    "pre_snapshot_cmds": "pre_cmds",
    "post_snapshot_cmds": "post_cmds",
    "transfer": "pipes",
}


def job(name: str = "bak", target_path: Optional[str] = "backup", **kwargs: object) -> Job:
    """A Job from the names of its parts' fields (`force=True`: `transfer.force`)."""
    kwargs.setdefault("keep_source", "10,1d1w,1w1m,1m1y")
    kwargs.setdefault("keep_target", "10,1d1w,1w1m,1m1y")
    for side in ("keep_source", "keep_target"):
        text = kwargs[side]
        kwargs[side] = (
            text if text is None or isinstance(text, Schedule) else Schedule.parse(str(text))
        )
    kwargs["target_path"] = target_path
    parts: dict[str, dict[str, object]] = {}
    for flat, value in kwargs.items():
        key = _RENAMED.get(flat, flat)
        owners = [f.name for f in _PARTS if key in attrs.fields_dict(f.type)]
        assert len(owners) == 1, f"{flat}: not a field of one of Job's parts"
        parts.setdefault(owners[0], {})[key] = value
    types = {f.name: f.type for f in _PARTS}
    made = {part: types[part](**values) for part, values in parts.items()}
    return Job(naming=Naming.create(name), **made)  # type: ignore[arg-type]


def run_desire(
    job_: Job,
    source: HostState,
    target: Optional[HostState],
    now: float,
    resume: Optional[dict[str, ResumeInfo]] = None,
) -> Desired:
    return desire(job_, source, target, snapgraph.build(source, target), now, resume or {})
