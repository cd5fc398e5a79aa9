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

from collections.abc import Mapping
from typing import Optional

import attrs

from reconcile import clones
from reconcile.fates import POST, PRE, Fate, fate, foreign_holds, thin_names
from reconcile.gcpause import paused
from reconcile.graph import SnapshotGraph
from reconcile.job import Job
from reconcile.mapping import map_targets
from reconcile.model import Dataset, HostState, ResumeInfo
from reconcile.pair import PairDesire, PairInput, SendWish, pair, sent_raw, split_target
from reconcile.selection import Choice, select, without_replicas

__all__ = [
    "POST",
    "PRE",
    "Desired",
    "Fate",
    "MissingDesire",
    "PairDesire",
    "SendWish",
    "desire",
    "split_target",
    "written_since",
]


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
    #: (pool, why): source pools whose datasets run without bookmarks
    no_bookmarks: tuple[tuple[str, str], ...] = ()
    #: the moment this was desired (seconds since the epoch)
    now: float = 0.0

    @property
    def selected(self) -> list[str]:
        return [c.dataset for c in self.choices if c.selected]


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
    ours = [s for s in ds.snapshots if job.naming.timestamp(s.name) is not None]
    if job.selection.min_change == 0 or not ours:
        return None
    if written_since(ds, ours[-1].name) < job.selection.min_change:
        return f"No changes since {ours[-1].name}"
    return None


@paused
def desire(
    job: Job,
    source: HostState,
    target: Optional[HostState],
    graph: SnapshotGraph,
    now: float,
    resume: Mapping[str, ResumeInfo] | None = None,
    *,
    snapshot_name: Optional[str] = None,
) -> Desired:
    """`snapshot_name`: the new snapshot's name when it was fixed before (a saved plan
    applied later); by default it is made from `now`."""
    values = {ds.name: ds.selection for ds in source if ds.selection is not None}
    values.update(source.selection)
    written = {ds.name: ds.written for ds in source}
    choices = select(
        values,
        property_name=job.naming.property_name,
        exclude_received=job.excludes_received,
        exclude_paths=job.remote.exclude_paths,
        exclude_unchanged=job.selection.exclude_unchanged,
        written=written,
    )
    if not job.selection.include_received and not job.excludes_received:
        # (a bookmark counts: with --keep-source=0 it is all the original has in common)
        guids = {ds.name: [*(s.guid for s in ds.snapshots), *(b.guid for b in ds.bookmarks)]
                 for ds in source}  # fmt: skip
        choices = without_replicas(choices, guids)
    selected = [source.datasets[c.dataset] for c in choices if c.selected]
    if job.selection.snapshot and snapshot_name is None:
        snapshot_name = job.naming.snapshot_name(now)
    if not job.selection.snapshot:
        snapshot_name = None

    targets: dict[str, str] = {}
    tag: Optional[str] = None
    base_tag: Optional[str] = None
    if job.remote.target_path is not None:
        targets = map_targets(
            [ds.name for ds in selected], job.remote.target_path, job.remote.strip_path
        )
        root = target.get(job.remote.target_path) if target is not None else None
        # an existing bookmark is a base whatever the options (found by its guid); only
        # runs with bookmarks and guid checks make and destroy them
        base_tag = str(root.guid) if root is not None and job.reads_bookmarks else None
        tag = base_tag if job.transfer.bookmarks and job.transfer.guid_check else None
    fallback: dict[str, str] = {}

    origins: dict[str, tuple[Optional[clones.Origin], Optional[str]]] = {}
    must: dict[str, dict[str, str]] = {}
    if target is not None and job.remote.target_path is not None:
        for ds in selected:
            origins[ds.name] = clones.find(job.transfer, ds, source, target, targets)
            origin = origins[ds.name][0]
            if origin is not None and origin.sent_by is not None:
                must.setdefault(origin.sent_by, {})[origin.name] = ds.name

    pairs = []
    made: dict[str, PairDesire] = {}
    for ds in clones.order(selected):
        note = _wants_snapshot(job, ds, snapshot_name) if snapshot_name else None
        new = snapshot_name if snapshot_name and note is None else None
        if job.remote.target_path is None:
            pairs.append(_snapshot_only(job, ds, new, note, now))
        else:
            assert target is not None
            name = targets[ds.name]
            why = _without_bookmarks(job, source, ds) if base_tag is not None else None
            if why and tag is not None:
                fallback.setdefault(ds.pool, why)
            origin, full = _origin_sent(origins.get(ds.name, (None, None)), made)
            tds = target.get(name)
            moved = clones.promoted_away(source, ds, target, tds) if tds and ds.origin else None
            pin = PairInput(
                job.naming, job.thinning, job.transfer, ds, name, tds, new, note, now, resume or {},
                None if why else tag, must.get(ds.name, {}), origin, full, moved,
                None if why else base_tag,
            )  # fmt: skip
            made[ds.name] = pair(pin, graph)
            pairs.append(made[ds.name])

    missing: list[MissingDesire] = []
    if target is not None and job.remote.target_path is not None:
        used = set(targets.values())
        for tds in target:
            if tds.name == job.remote.target_path or tds.name in used:
                continue
            missing.append(_missing(job, tds, target, now))
    pairs, missing = _pin_origins(pairs, missing)
    return Desired(
        tuple(choices),
        snapshot_name,
        tuple(pairs),
        tuple(missing),
        tuple(sorted(fallback.items())),
        now,
    )


def _origin_sent(
    found: tuple[Optional[clones.Origin], Optional[str]], made: Mapping[str, PairDesire]
) -> tuple[Optional[clones.Origin], Optional[str]]:
    """A new clone's origin, once its origin's pair is known: an origin this run sends
    first must be among that pair's sends (else the clone is sent in full, and why)."""
    origin, full = found
    if origin is None or origin.sent_by is None:
        return origin, full
    op = made.get(origin.sent_by)
    if op is not None and origin.name in {w.snapshot for w in op.sends}:
        return origin, None
    if op is not None and op.problem:
        why = "its dataset can't be sent"
    else:
        why = f"it is older than what the target has of {origin.dataset}"
    return None, f"its origin {origin.snapshot} is not on the target, and {why}"


def _pin_origins(
    pairs: list[PairDesire], missing: list[MissingDesire]
) -> tuple[list[PairDesire], list[MissingDesire]]:
    """A target snapshot that a new clone is received from in this run stays: its clone
    will pin it from then on (zfs refuses to destroy a snapshot with clones)."""
    bases: dict[int, list[str]] = {}
    for p in pairs:
        if p.origin is not None and p.sends and p.sends[0].from_origin:
            bases.setdefault(p.origin.guid, []).append(p.target_name)
    if not bases:
        return pairs, missing

    def pin(tds: Optional[Dataset], fates: tuple[Fate, ...]) -> tuple[Fate, ...]:
        guids = {s.name: s.guid for s in tds.snapshots} if tds is not None else {}
        result = []
        for f in fates:
            clones = bases.get(guids.get(f.snapshot, -1), [])
            s = "s" if len(clones) > 1 else ""
            why = f"origin of {len(clones)} clone{s}: {', '.join(clones)}, "
            why += f"received as its clone{s} in this run"
            keep = bool(clones) and not f.keep
            result.append(attrs.evolve(f, keep=True, reason=why, kept_because=why) if keep else f)
        return tuple(result)

    pairs = [attrs.evolve(p, target_fates=pin(p.target, p.target_fates)) for p in pairs]
    kept = []
    for m in missing:
        fates = pin(m.target, m.fates)
        held = fates != m.fates
        note = m.note
        if held and m.destroy:  # (the log must not say "Destroy missing." then)
            guids = {s.guid for s in m.target.snapshots}
            names = ", ".join(c for g, cs in bases.items() if g in guids for c in cs)
            note = f"Destroy missing: Still has clones ({names}, received in this run)."
        kept.append(attrs.evolve(m, fates=fates, destroy=m.destroy and not held, note=note))
    return pairs, kept


def _without_bookmarks(job: Job, source: HostState, ds: Dataset) -> Optional[str]:
    """Why `ds` runs as with --no-bookmarks (None: it does not). Pool features are known
    once they were read (a plan that sends or bookmarks reads them, and is made again)."""
    features = source.pool_features(ds.name)
    if not features:
        return None
    if "bookmarks" not in features:
        return "the pool lacks feature@bookmarks: its datasets run as with --no-bookmarks"
    if sent_raw(ds, job.transfer) and "bookmark_v2" not in features:
        return (
            "the pool lacks feature@bookmark_v2 (raw sends from bookmarks need it): its "
            "encrypted datasets run as with --no-bookmarks"
        )
    return None


def _snapshot_only(
    job: Job, ds: Dataset, new: Optional[str], note: Optional[str], now: float
) -> PairDesire:
    """No target: only snapshot and thin the source (held snapshots are kept)."""
    ours = [s for s in ds.snapshots if job.naming.timestamp(s.name) is not None]
    names = [s.name for s in ours] + ([new] if new else [])
    stamps = [job.naming.timestamp(n) or 0.0 for n in names]
    verdicts = thin_names(job.thinning.keep_source, names, stamps, now)
    fates = []
    for snap in ours:
        keep, reason = verdicts[snap.name]
        if not keep and job.naming.hold_tag in snap.holds:
            fates.append(Fate(snap.name, True, "common snapshot (held)", held_by_us=True))
        else:
            fates.append(fate(job.naming, snap, keep, reason, POST))
    return PairDesire(
        source=ds,
        target_name="",
        target=None,
        new_snapshot=new,
        snapshot_note=note,
        source_fates=tuple(fates),
    )


def _missing(job: Job, tds: Dataset, target: HostState, now: float) -> MissingDesire:
    ours = [s for s in tds.snapshots if job.naming.timestamp(s.name) is not None]
    names = [s.name for s in ours]
    verdicts = thin_names(
        job.thinning.keep_target, names, [job.naming.timestamp(n) or 0.0 for n in names], now
    )
    thinned = tuple(
        fate(
            job.naming, snap, verdicts[snap.name][0], f"missing on source; {verdicts[snap.name][1]}"
        )
        for snap in ours
    )
    if job.thinning.destroy_missing is None:
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
    if (job.naming.timestamp(last.name) or 0.0) + job.thinning.destroy_missing > now:
        return MissingDesire(tds, thinned, note="Destroy missing: Waiting for deadline.")
    # past the deadline: every snapshot of ours but the last goes, whatever the schedule
    why = "missing on source past the --destroy-missing deadline"
    fates = [fate(job.naming, snap, False, why) for snap in ours[:-1]]
    others = [s for s in tds.snapshots if job.naming.timestamp(s.name) is None]
    foreign = foreign_holds(job.naming, last)
    cloned = [c for snap in tds.snapshots for c in snap.clones]
    if others:
        note = "Destroy missing: Still in use by other snapshots."
    elif children:
        note = "Destroy missing: Still has children here."
    elif cloned:
        note = f"Destroy missing: Still has clones ({', '.join(cloned)})."
    elif foreign:
        note = f"Destroy missing: Its last snapshot is held by {', '.join(foreign)}."
    else:
        fates.append(fate(job.naming, last, False, why))
        return MissingDesire(tds, tuple(fates), destroy=True, note="Destroy missing.")
    # (one with clones is kept as their origin: the plan names them)
    fates.append(fate(job.naming, last, not last.clones, "last snapshot of a missing dataset"))
    return MissingDesire(tds, tuple(fates), note=note)
