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
    #: the destroy must succeed before the dataset's sends (incompatible snapshots);
    #: False: thinning, which never blocks sending
    required: bool = False
    #: the schedule drops it, but this keeps it ("has clones: ...", "held by ...")
    kept_because: Optional[str] = None


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
    *,
    required: bool = False,
) -> Fate:
    """A snapshot's fate; one the schedule drops is still kept when zfs would refuse to
    destroy it: it has clones, or someone else holds it."""
    held = job.naming.hold_tag in snap.holds
    pin = _pinned(job, snap) if not keep else None
    if pin:
        return Fate(snap.name, True, pin, held_by_us=held, kept_because=pin)
    return Fate(snap.name, keep, reason, phase, held_by_us=held, required=required)


def _pinned(job: Job, snap: Snapshot) -> Optional[str]:
    """Why zfs would refuse to destroy `snap` (None: it would not)."""
    if snap.clones:
        return f"has clones: {', '.join(snap.clones)}"
    foreign = _foreign_holds(job, snap)
    return f"held by {', '.join(foreign)}" if foreign else None


def desire(
    job: Job,
    source: HostState,
    target: Optional[HostState],
    graph: nx.DiGraph,
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
        exclude_paths=job.exclude_paths,
        exclude_unchanged=job.exclude_unchanged,
        written=written,
    )
    selected = [source.datasets[c.dataset] for c in choices if c.selected]
    if job.snapshot and snapshot_name is None:
        snapshot_name = job.naming.snapshot_name(now)
    if not job.snapshot:
        snapshot_name = None

    targets: dict[str, str] = {}
    if job.target_path is not None:
        targets = map_targets([ds.name for ds in selected], job.target_path, job.strip_path)

    pairs = []
    for ds in selected:
        note = _wants_snapshot(job, ds, snapshot_name) if snapshot_name else None
        new = snapshot_name if snapshot_name and note is None else None
        if job.target_path is None:
            pairs.append(_snapshot_only(job, ds, new, note, now))
        else:
            assert target is not None
            name = targets[ds.name]
            pin = _PairInput(job, ds, name, target.get(name), new, note, now, resume or {})
            pairs.append(_pair(pin, graph))

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


@attrs.frozen
class _Link:
    """One snapshot of the source chain as it will be after snapshotting (`snapshot` is
    None for the one this run takes)."""

    name: str
    guid: Optional[int]
    snapshot: Optional[Snapshot]


@attrs.frozen
class _PairInput:
    job: Job
    source: Dataset
    target_name: str
    target: Optional[Dataset]
    new: Optional[str]
    note: Optional[str]
    now: float
    resume: Mapping[str, ResumeInfo]

    @property
    def raw(self) -> bool:
        """Sent raw (-w): an encrypted source without --decrypt."""
        return self.source.encryption != "off" and not self.job.decrypt


def split_target(
    tds: Optional[Dataset], common: Optional[Snapshot], raw: bool
) -> tuple[list[Snapshot], list[Snapshot]]:
    """(compatible, incompatible) target snapshots, as zfs-autobackup 3.3 and `zfs recv`
    see them: everything up to the common snapshot is compatible, and so are the direct
    follow-ups of the common snapshot with nothing written in them (`written` 0: the
    same data, so an increment from the common snapshot still applies); the first one
    with data written, and everything after it, is incompatible. A raw receive accepts
    no snapshot at all after its base: there every follow-up is incompatible.

        target A(common) B(written 0) C(written 0) D(written 4K) E  ->  A B C | D E
    """
    if tds is None:
        return [], []
    if common is None:
        return list(tds.snapshots), []
    index = next(i for i, s in enumerate(tds.snapshots) if s.guid == common.guid)
    compatible = list(tds.snapshots[: index + 1])
    rest = list(tds.snapshots[index + 1 :])
    while rest and not raw and rest[0].written == 0:
        compatible.append(rest.pop(0))
    return compatible, rest


def _pair(pin: _PairInput, graph: nx.DiGraph) -> PairDesire:
    job, ds, tds = pin.job, pin.source, pin.target
    base = PairDesire(
        source=ds,
        target_name=pin.target_name,
        target=tds,
        new_snapshot=pin.new,
        snapshot_note=pin.note,
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
    chain = [_Link(s.name, s.guid, s) for s in ds.snapshots]
    if pin.new:
        chain.append(_Link(pin.new, None, None))
    common_src = common[0].name if common else None
    common_tgt = common[1].name if common else None
    position = {link.name: i for i, link in enumerate(chain)}
    common_idx = position[common_src] if common_src else -1
    candidates = [
        link
        for link in chain[common_idx + 1 :]
        if job.other_snapshots or _ours(job, link.name) is not None
    ]
    existing, incompatible = split_target(tds, common[1] if common else None, pin.raw)
    excluded = _excluded(job, ds.name, candidates)

    # the target schedule over what the target has and what it would receive (never
    # the snapshots --exclude-snapshot-pattern keeps from being sent)
    future = [s.name for s in existing if _ours(job, s.name) is not None]
    future += [
        c.name for c in candidates if _ours(job, c.name) is not None and c.name not in excluded
    ]
    target_verdicts = _thin_names(
        job.keep_target, future, [_ours(job, n) or 0.0 for n in future], pin.now
    )

    problem = _blocking_problem(pin, incompatible)
    sends, skipped = (
        ([], [])
        if problem
        else _sends(pin, chain, candidates, excluded, target_verdicts, common_src)
    )
    if problem:
        skipped = [(c.name, why) for c in candidates if (why := excluded.get(c.name))]
    final_common = sends[-1].snapshot if sends else common_src
    source_fates = _source_fates(
        pin, chain, position, common_src, final_common, {w.snapshot for w in sends}, target_verdicts
    )
    target_fates = _target_fates(
        pin, existing, incompatible, common_tgt, final_common == common_src, target_verdicts
    )
    abort, sends = _resume(pin, sends) if not problem else (None, sends)
    rollback_to = None
    if not problem:
        # (to the newest snapshot thinning leaves: thinning goes first)
        thinned = {f.snapshot for f in target_fates if not f.keep and f.phase == PRE}
        remaining = [s for s in existing if s.name not in thinned]
        rollback_to, problem = _rollback(pin, remaining, incompatible, sends)
        if problem:
            sends, final_common = [], common_src
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


def _excluded(job: Job, dataset: str, candidates: Sequence[_Link]) -> dict[str, str]:
    """Candidates that --exclude-snapshot-pattern keeps from being sent -> why."""
    patterns = [re.compile(p) for p in job.exclude_snapshot_patterns]
    return {
        c.name: "matches --exclude-snapshot-pattern"
        for c in candidates
        if any(p.search(f"{dataset}@{c.name}") for p in patterns)
    }


def _blocking_problem(pin: _PairInput, incompatible: Sequence[Snapshot]) -> Optional[str]:
    """A problem that stops the dataset's sends; its thinning still happens (as 3.3,
    which thins both sides before it finds out)."""
    job, tds = pin.job, pin.target
    pinned = [(s.name, why) for s in incompatible if (why := _pinned(job, s))]
    if incompatible and job.destroy_incompatible and pinned:
        listing = "; ".join(f"{name} {why}" for name, why in pinned)
        return (
            f"Incompatible snapshots on the target can't be destroyed: {listing}. "
            "Remove what keeps them, then run again."
        )
    if incompatible and not job.destroy_incompatible:
        listing = ", ".join(s.name for s in incompatible)
        return (
            f"Incompatible snapshots on the target (newer than the common snapshot): "
            f"{listing}. Destroy them on the target, or use --destroy-incompatible."
        )
    # (a dataset without snapshots but with a resume token is an interrupted full receive)
    if (
        tds is not None
        and not tds.snapshots
        and not tds.resume_token
        and not job.force
        and job.send
    ):
        return (
            f"Target dataset {tds.name} exists but has no snapshots: a full receive "
            "would overwrite it. Destroy it, or use --force."
        )
    return None


def _sends(
    pin: _PairInput,
    chain: Sequence[_Link],
    candidates: Sequence[_Link],
    excluded: Mapping[str, str],
    target_verdicts: Mapping[str, tuple[bool, str]],
    common_src: Optional[str],
) -> tuple[list[SendWish], list[tuple[str, str]]]:
    """The candidates the target schedule keeps, each from the one sent before it."""
    sends: list[SendWish] = []
    skipped: list[tuple[str, str]] = []
    if not pin.job.send:
        return sends, skipped
    position = {link.name: i for i, link in enumerate(chain)}
    prev = common_src
    for link in candidates:
        if link.name in excluded:
            skipped.append((link.name, excluded[link.name]))
            continue
        keep, reason = target_verdicts.get(link.name, (True, "not made by this backup"))
        if not keep:
            skipped.append((link.name, f"target schedule skips it: {reason}"))
            continue
        at = position[link.name]
        adjacent = prev is not None and at > 0 and chain[at - 1].name == prev
        sends.append(
            SendWish(link.name, link.guid, prev, f"target keeps it: {reason}", adjacent=adjacent)
        )
        prev = link.name
    return sends, skipped


def _source_fates(
    pin: _PairInput,
    chain: Sequence[_Link],
    position: Mapping[str, int],
    common_src: Optional[str],
    final_common: Optional[str],
    sent: set[str],
    target_verdicts: Mapping[str, tuple[bool, str]],
) -> list[Fate]:
    job = pin.job
    ours = [link.snapshot for link in chain if link.snapshot and _ours(job, link.name) is not None]
    names = [s.name for s in ours] + ([pin.new] if pin.new else [])
    verdicts = _thin_names(job.keep_source, names, [_ours(job, n) or 0.0 for n in names], pin.now)
    common_idx = position[common_src] if common_src else -1
    fates = []
    for snap in ours:
        keep, reason = verdicts[snap.name]
        drop = f"source schedule drops it ({reason})"
        target_wants = target_verdicts.get(snap.name, (False, ""))[0]
        if snap.name == final_common:
            fates.append(_fate(job, snap, True, "newest common snapshot"))
        elif keep:
            fates.append(_fate(job, snap, True, reason))
        elif snap.name == common_src:
            # replaced as common snapshot by a newer one: destroy after that one is held
            fates.append(_fate(job, snap, False, drop, POST))
        elif position[snap.name] < common_idx or not target_wants:
            fates.append(_fate(job, snap, False, drop, PRE))
        elif snap.name in sent:
            fates.append(_fate(job, snap, False, f"{drop}, once sent", POST))
        else:
            fates.append(_fate(job, snap, True, "the target still needs it"))
    return fates


def _target_fates(
    pin: _PairInput,
    existing: Sequence[Snapshot],
    incompatible: Sequence[Snapshot],
    common_tgt: Optional[str],
    common_stays: bool,
    target_verdicts: Mapping[str, tuple[bool, str]],
) -> list[Fate]:
    job = pin.job
    fates = []
    for snap in existing:
        if _ours(job, snap.name) is None:
            fates.append(Fate(snap.name, True, "not made by this backup"))
            continue
        keep, reason = target_verdicts[snap.name]
        drop = f"target schedule drops it ({reason})"
        if snap.name == common_tgt and common_stays:
            fates.append(_fate(job, snap, True, "newest common snapshot"))
        elif keep:
            fates.append(_fate(job, snap, True, reason))
        else:
            fates.append(_fate(job, snap, False, drop, POST if snap.name == common_tgt else PRE))
    if job.destroy_incompatible:
        for snap in incompatible:
            fates.append(
                _fate(job, snap, False, "incompatible (--destroy-incompatible)", PRE, required=True)
            )
    return fates


def _resume(pin: _PairInput, sends: list[SendWish]) -> tuple[Optional[str], list[SendWish]]:
    """(why the target's resume token is aborted, the sends with the token on the one it
    resumes). Without --no-send a token is resumed when it belongs to the first send:
    that dataset and snapshot, that guid; otherwise it is aborted. With --no-send it is
    left alone: aborting would delete a partially received first backup."""
    tds = pin.target
    if tds is None or not tds.resume_token or not pin.job.send:
        return None, sends
    info = pin.resume.get(tds.name)
    if not sends:
        return "Aborting resume, its obsolete.", sends
    first = sends[0]
    if (
        info is not None
        and info.toname.partition("@")[0] == pin.source.name
        and info.snapshot == first.snapshot
        and first.guid is not None
        and (info.toguid is None or info.toguid == first.guid)
    ):
        return None, [attrs.evolve(first, resume_token=tds.resume_token), *sends[1:]]
    return "Aborting resume, its no longer valid.", sends


def _rollback(
    pin: _PairInput,
    existing: Sequence[Snapshot],
    incompatible: Sequence[Snapshot],
    sends: Sequence[SendWish],
) -> tuple[Optional[str], Optional[str]]:
    """(the target snapshot to roll back to, or a problem), as 3.3:

    - --destroy-incompatible rolls the target back to its newest remaining snapshot after
      destroying incompatible ones (whether or not anything is sent);
    - --rollback discards changes right before the first transfer, and only then;
    - a changed target without --rollback stops the dataset before anything is sent
      (3.3 fails inside `zfs recv`)."""
    job, tds = pin.job, pin.target
    if tds is None or not existing:
        return None, None
    newest = existing[-1].name
    if incompatible and job.destroy_incompatible:
        return newest, None
    transfers = bool(sends) and not job.force
    if not transfers or tds.written == 0:
        return None, None
    if job.rollback:
        return newest, None
    if sends[0].resume_token is not None:
        return None, None
    return None, (
        f"Target dataset {tds.name} was changed since its newest snapshot "
        f"({tds.written} bytes written): use --rollback to discard those changes "
        "(or set readonly=on on the target to prevent this)."
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
        fates.append(_fate(job, last, False, why))
        return MissingDesire(tds, tuple(fates), destroy=True, note="Destroy missing.")
    fates.append(_fate(job, last, True, "last snapshot of a missing dataset"))
    return MissingDesire(tds, tuple(fates), note=note)
