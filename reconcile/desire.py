"""Desire: what should exist after this run, per dataset, and why. Pure.

Inputs are values: the job, the observed source and target state, their snapshot graph,
the resume tokens' contents, and `now`. For each selected source dataset the result says
whether a new snapshot is taken, which snapshots each side keeps (with the thinner's
reason), which source snapshots are sent, and the problems that stop the dataset.
It follows zfs-autobackup 3.3's sync:

- the common snapshot is the newest source snapshot whose guid is on the target;
- the candidates to send are "our" snapshots after it (all snapshots with
  --other-snapshots); the target schedule is applied to the target's snapshots *plus*
  the candidates (as if they had arrived), and only candidates it keeps are sent;
- the source schedule decides the source; a source snapshot the target still wants is
  destroyed only after it was sent ("post"), others as soon as possible ("pre"); the
  common snapshot is destroyed only after a newer one became common;
- target snapshots the target schedule drops are destroyed before receiving ("pre"), so
  a backup that is far behind does not run out of space;
- target snapshots newer than the common one are incompatible: they stop the dataset
  unless --destroy-incompatible.

Example: keep-target 1d1w, keep-source 2; source snapshots Jan 1 12:00 (the common one,
already on the target), Jan 2 08:00, Jan 2 20:00 and Jan 3 12:00 (now):
- the target schedule over all four keeps one per day: Jan 1, Jan 2 08:00 and Jan 3;
  Jan 2 20:00 shares its day with 08:00, so it is skipped (never sent);
- sends: Jan 2 08:00 incremental from Jan 1, then Jan 3 incremental from Jan 2 08:00;
- the source keeps its last 2 (Jan 2 20:00 and Jan 3); Jan 1 (the old common snapshot)
  and Jan 2 08:00 are destroyed only after the sends ("post").
(`tests/test_desire_plan.py` has this and more as tests.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Optional

import attrs
import networkx as nx

from reconcile import graph as snapgraph
from reconcile.job import Job
from reconcile.mapping import map_targets
from reconcile.model import Dataset, HostState, ResumeInfo, Snapshot
from reconcile.schedule import Schedule
from reconcile.selection import Choice, select
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


@attrs.frozen
class SendWish:
    snapshot: str
    guid: Optional[int]
    #: incremental base (source snapshot name), None for a full send
    base: Optional[str]
    reason: str
    #: resume this send with the target's token
    resume_token: Optional[str] = None
    #: the base is the snapshot right before this one on the source: nothing in between
    #: would be sent along by `zfs send -I`
    adjacent: bool = False


@attrs.frozen
class PairDesire:
    source: Dataset
    target_name: str
    target: Optional[Dataset]
    new_snapshot: Optional[str] = None
    #: why no new snapshot (printed under Snapshotting)
    snapshot_note: Optional[str] = None
    common: Optional[tuple[str, str]] = None
    sends: tuple[SendWish, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    source_fates: tuple[Fate, ...] = ()
    target_fates: tuple[Fate, ...] = ()
    incompatible: tuple[str, ...] = ()
    abort_resume: Optional[str] = None
    rollback_to: Optional[str] = None
    #: the newest common snapshot once this run is done (gets the holds)
    final_common: Optional[str] = None
    problem: Optional[str] = None

    @property
    def name(self) -> str:
        return self.source.name


@attrs.frozen
class MissingDesire:
    """A target dataset whose source is gone or no longer selected.

    It is thinned with the target schedule (its last snapshot of ours is always kept);
    with --destroy-missing, once the deadline passed, all our snapshots but the last go,
    and the dataset itself goes when nothing else holds it (`destroy`).
    """

    target: Dataset
    fates: tuple[Fate, ...]
    destroy: bool = False
    #: what --destroy-missing decided, for the log ("Waiting for deadline", ...)
    note: Optional[str] = None


@attrs.frozen
class Desired:
    choices: tuple[Choice, ...]
    snapshot_name: Optional[str]
    pairs: tuple[PairDesire, ...]
    missing: tuple[MissingDesire, ...] = ()

    @property
    def selected(self) -> list[str]:
        return [c.dataset for c in self.choices if c.selected]


def _ours(job: Job, snap_name: str) -> Optional[float]:
    return job.naming.timestamp(snap_name)


def written_since(ds: Dataset, snapshot: str) -> int:
    """Bytes written since `snapshot`, from values observation already has: the
    dataset's `written` plus the `written` of every snapshot after it. (zfs'
    `written@SNAP` would cost a command per dataset; the sum can only be larger.)"""
    index = next(i for i, s in enumerate(ds.snapshots) if s.name == snapshot)
    return ds.written + sum(s.written for s in ds.snapshots[index + 1 :])


def _wants_snapshot(job: Job, ds: Dataset, name: str) -> Optional[str]:
    """None if the dataset gets the new snapshot, else the note why not.

    As zfs-autobackup 3.3: changed means at least --min-change bytes written since the
    newest snapshot *of this backup* (so two backup names on one dataset both snapshot).
    """
    if ds.snapshot(name) is not None:
        return f"Snapshot {name} already exists"
    ours = [s for s in ds.snapshots if _ours(job, s.name) is not None]
    if job.min_change == 0 or not ours:
        return None
    if written_since(ds, ours[-1].name) < job.min_change:
        return f"No changes since {ours[-1].name}"
    return None


def _thin_names(
    schedule: Optional[Schedule],
    names: Sequence[str],
    stamps: Sequence[float],
    now: float,
) -> dict[str, tuple[bool, str]]:
    """name -> (keep, reason) for our snapshots, the newest always kept."""
    if not names:
        return {}
    if schedule is None:
        return dict.fromkeys(names, (True, "--no-thinning"))
    verdicts = thin(schedule, stamps, now, always={len(names) - 1})
    return {n: (v.keep, v.reason) for n, v in zip(names, verdicts)}


def _foreign_holds(job: Job, snap: Snapshot) -> list[str]:
    return [tag for tag in snap.holds if tag != job.naming.hold_tag]


def _fate(
    job: Job,
    snap: Snapshot,
    keep: bool,
    reason: str,
    phase: str = PRE,
) -> Fate:
    held = job.naming.hold_tag in snap.holds
    if not keep:
        foreign = _foreign_holds(job, snap)
        if foreign:
            return Fate(snap.name, True, f"held by {', '.join(foreign)}", held_by_us=held)
    return Fate(snap.name, keep, reason, phase, held_by_us=held)


def desire(
    job: Job,
    source: HostState,
    target: Optional[HostState],
    graph: nx.DiGraph,
    now: float,
    resume: Mapping[str, ResumeInfo] | None = None,
) -> Desired:
    values = {ds.name: ds.selection for ds in source if ds.selection is not None}
    values.update(source.selection)
    written = {ds.name: ds.written for ds in source}
    choices = select(
        values,
        property_name=job.naming.property_name,
        exclude_received=job.exclude_received,
        exclude_paths=job.exclude_paths,
        exclude_unchanged=job.exclude_unchanged,
        written=written,
    )
    selected = [source.datasets[c.dataset] for c in choices if c.selected]
    snapshot_name = job.naming.snapshot_name(now) if job.snapshot else None

    targets: dict[str, str] = {}
    if job.target_path is not None:
        targets = map_targets([ds.name for ds in selected], job.target_path, job.strip_path)

    pairs = []
    for ds in selected:
        note = _wants_snapshot(job, ds, snapshot_name) if snapshot_name else "--no-snapshot"
        new = snapshot_name if snapshot_name and note is None else None
        if job.target_path is None:
            pairs.append(_snapshot_only(job, ds, new, note, now))
        else:
            assert target is not None
            name = targets[ds.name]
            pairs.append(
                _pair(job, ds, name, target.get(name), graph, new, note, now, resume or {})
            )

    missing: list[MissingDesire] = []
    if target is not None and job.target_path is not None:
        used = set(targets.values())
        for tds in target:
            if tds.name == job.target_path or tds.name in used:
                continue
            missing.append(_missing(job, tds, target, graph, now))
    return Desired(tuple(choices), snapshot_name, tuple(pairs), tuple(missing))


def _snapshot_only(
    job: Job, ds: Dataset, new: Optional[str], note: Optional[str], now: float
) -> PairDesire:
    """No target: only snapshot and thin the source (held snapshots are kept)."""
    ours = [s for s in ds.snapshots if _ours(job, s.name) is not None]
    names = [s.name for s in ours] + ([new] if new else [])
    stamps = [_ours(job, n) or 0.0 for n in names]
    verdicts = _thin_names(job.keep_source, names, stamps, now)
    fates = []
    for snap in ours:
        keep, reason = verdicts[snap.name]
        if not keep and job.naming.hold_tag in snap.holds:
            fates.append(Fate(snap.name, True, "common snapshot (held)", held_by_us=True))
        else:
            fates.append(_fate(job, snap, keep, reason, POST))
    return PairDesire(
        source=ds,
        target_name="",
        target=None,
        new_snapshot=new,
        snapshot_note=note,
        source_fates=tuple(fates),
    )


def _pair(
    job: Job,
    ds: Dataset,
    target_name: str,
    tds: Optional[Dataset],
    graph: nx.DiGraph,
    new: Optional[str],
    note: Optional[str],
    now: float,
    resume: Mapping[str, ResumeInfo],
) -> PairDesire:
    base = PairDesire(
        source=ds, target_name=target_name, target=tds, new_snapshot=new, snapshot_note=note
    )
    if job.guid_check:
        common = snapgraph.latest_common(graph, ds, tds)
    else:
        common = snapgraph.latest_common_by_name(ds, tds)
    if tds is not None and tds.snapshots and common is None:
        return attrs.evolve(
            base,
            problem="Can't find a common snapshot with the target: you probably need to "
            "destroy the target dataset to fix this.",
        )
    # a dataset without snapshots but with a resume token is an interrupted full receive
    if (
        tds is not None
        and not tds.snapshots
        and not tds.resume_token
        and not job.force
        and job.send
    ):
        return attrs.evolve(
            base,
            problem=f"Target dataset {tds.name} exists but has no snapshots: a full receive "
            "would overwrite it. Destroy it, or use --force.",
        )

    # the source chain as it will be after snapshotting: (name, guid, Snapshot or None)
    chain: list[tuple[str, Optional[int], Optional[Snapshot]]] = [
        (s.name, s.guid, s) for s in ds.snapshots
    ]
    if new:
        chain.append((new, None, None))
    common_src = common[0].name if common else None
    src_index = {c[0]: i for i, c in enumerate(chain)}
    common_idx = src_index.get(common_src, -1) if common_src else -1
    candidates = [
        c for c in chain[common_idx + 1 :] if job.other_snapshots or _ours(job, c[0]) is not None
    ]

    # target: what exists (minus incompatible), plus the candidates as if received
    incompatible: list[Snapshot] = []
    existing: list[Snapshot] = []
    if tds is not None:
        after = False
        for snap in tds.snapshots:
            if after:
                incompatible.append(snap)
            else:
                existing.append(snap)
            if common and snap.name == common[1].name and snap.guid == common[1].guid:
                after = True
    if incompatible and not job.destroy_incompatible:
        listing = ", ".join(s.name for s in incompatible)
        return attrs.evolve(
            base,
            common=(common[0].name, common[1].name) if common else None,
            incompatible=tuple(s.name for s in incompatible),
            problem=f"Incompatible snapshots on the target (newer than the common snapshot): "
            f"{listing}. Destroy them on the target, or use --destroy-incompatible.",
        )

    future = [s.name for s in existing if _ours(job, s.name) is not None]
    future += [c[0] for c in candidates if _ours(job, c[0]) is not None]
    target_verdicts = _thin_names(
        job.keep_target, future, [_ours(job, n) or 0.0 for n in future], now
    )

    sends: list[SendWish] = []
    skipped: list[tuple[str, str]] = []
    prev = common_src
    patterns = [re.compile(p) for p in job.exclude_snapshot_patterns]
    if job.send:
        for name, guid, _ in candidates:
            if any(p.search(f"{ds.name}@{name}") for p in patterns):
                skipped.append((name, "matches --exclude-snapshot-pattern"))
                continue
            keep, reason = target_verdicts.get(name, (True, "not made by this backup"))
            if keep:
                position = src_index[name]
                adjacent = prev is not None and position > 0 and chain[position - 1][0] == prev
                sends.append(
                    SendWish(name, guid, prev, f"target keeps it: {reason}", adjacent=adjacent)
                )
                prev = name
            else:
                skipped.append((name, f"target schedule skips it: {reason}"))
    final_common = sends[-1].snapshot if sends else common_src
    sent = {w.snapshot for w in sends}

    # source fates
    ours = [s for s in ds.snapshots if _ours(job, s.name) is not None]
    names = [s.name for s in ours] + ([new] if new else [])
    source_verdicts = _thin_names(
        job.keep_source, names, [_ours(job, n) or 0.0 for n in names], now
    )
    source_fates = []
    for snap in ours:
        keep, reason = source_verdicts[snap.name]
        drop = f"source schedule drops it ({reason})"
        target_wants = target_verdicts.get(snap.name, (False, ""))[0]
        if snap.name == final_common:
            source_fates.append(_fate(job, snap, True, "newest common snapshot"))
        elif keep:
            source_fates.append(_fate(job, snap, True, reason))
        elif snap.name == common_src:
            # replaced as common snapshot by a newer one: destroy after that one is held
            source_fates.append(_fate(job, snap, False, drop, POST))
        elif src_index[snap.name] < common_idx or not target_wants:
            source_fates.append(_fate(job, snap, False, drop, PRE))
        elif snap.name in sent:
            source_fates.append(_fate(job, snap, False, f"{drop}, once sent", POST))
        else:
            source_fates.append(_fate(job, snap, True, "the target still needs it"))

    # target fates (existing snapshots)
    target_fates = []
    common_tgt = common[1].name if common else None
    for snap in existing:
        if _ours(job, snap.name) is None:
            target_fates.append(Fate(snap.name, True, "not made by this backup"))
            continue
        keep, reason = target_verdicts[snap.name]
        drop = f"target schedule drops it ({reason})"
        if snap.name == common_tgt and final_common == common_src:
            target_fates.append(_fate(job, snap, True, "newest common snapshot"))
        elif keep:
            target_fates.append(_fate(job, snap, True, reason))
        else:
            target_fates.append(
                _fate(job, snap, False, drop, POST if snap.name == common_tgt else PRE)
            )
    for snap in incompatible:
        target_fates.append(
            Fate(snap.name, False, "incompatible (--destroy-incompatible)", PRE,
                 held_by_us=job.naming.hold_tag in snap.holds)
        )  # fmt: skip

    # resume token, rollback
    abort = None
    if tds is not None and tds.resume_token:
        info = resume.get(tds.name)
        if sends and info is not None and info.snapshot == sends[0].snapshot:
            sends[0] = attrs.evolve(sends[0], resume_token=tds.resume_token)
        elif not sends:
            abort = "Aborting resume, its obsolete."
        else:
            abort = "Aborting resume, its no longer valid."
    rollback_to = None
    problem = None
    # as v3: --rollback discards changes on the target whenever it syncs, sends or not
    # (with --force, a receive's -F does it)
    if tds is not None and job.send and common_tgt and not (job.force and sends):
        changed = tds.written > 0 or bool(incompatible)
        if changed and (job.rollback or job.destroy_incompatible):
            rollback_to = common_tgt
        elif tds.written > 0 and sends and sends[0].resume_token is None:
            problem = (
                f"Target dataset {tds.name} was changed since its newest snapshot "
                f"({tds.written} bytes written): use --rollback to discard those changes "
                "(or set readonly=on on the target to prevent this)."
            )
    return attrs.evolve(
        base,
        common=(common_src, common_tgt) if common_src and common_tgt else None,
        sends=tuple(sends),
        skipped=tuple(skipped),
        source_fates=tuple(source_fates),
        target_fates=tuple(target_fates),
        incompatible=tuple(s.name for s in incompatible),
        abort_resume=abort,
        rollback_to=rollback_to,
        final_common=final_common,
        problem=problem,
    )


def _missing(
    job: Job, tds: Dataset, target: HostState, graph: nx.DiGraph, now: float
) -> MissingDesire:
    ours = [s for s in tds.snapshots if _ours(job, s.name) is not None]
    names = [s.name for s in ours]
    verdicts = _thin_names(job.keep_target, names, [_ours(job, n) or 0.0 for n in names], now)
    thinned = tuple(
        _fate(job, snap, verdicts[snap.name][0], f"missing on source; {verdicts[snap.name][1]}")
        for snap in ours
    )
    if job.destroy_missing is None:
        return MissingDesire(tds, thinned)
    children = target.children(tds.name)
    if not ours:
        note = (
            None
            if children
            else "Destroy missing: has no snapshots made by us (please destroy manually)."
        )
        return MissingDesire(tds, thinned, note=note)
    last = ours[-1]
    if (_ours(job, last.name) or 0.0) + job.destroy_missing > now:
        return MissingDesire(tds, thinned, note="Destroy missing: Waiting for deadline.")
    # past the deadline: every snapshot of ours but the last goes, whatever the schedule
    why = "missing on source past the --destroy-missing deadline"
    fates = [_fate(job, snap, False, why) for snap in ours[:-1]]
    others = [s for s in tds.snapshots if _ours(job, s.name) is None]
    foreign = _foreign_holds(job, last)
    cloned = [c for snap in tds.snapshots for c in snapgraph.clones(graph, snapgraph.TARGET, snap)]
    if others:
        note = "Destroy missing: Still in use by other snapshots."
    elif children:
        note = "Destroy missing: Still has children here."
    elif cloned:
        note = f"Destroy missing: Still has clones ({', '.join(cloned)})."
    elif foreign:
        note = f"Destroy missing: Its last snapshot is held by {', '.join(foreign)}."
    else:
        fates.append(_fate(job, last, False, why))
        return MissingDesire(tds, tuple(fates), destroy=True, note="Destroy missing.")
    fates.append(_fate(job, last, True, "last snapshot of a missing dataset"))
    return MissingDesire(tds, tuple(fates), note=note)
