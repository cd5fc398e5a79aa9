"""Diff and plan: desired state -> ordered actions with dependencies. Pure.

For each dataset pair the actions form a chain, in this order:

    target: abort a stale resume, destroy incompatible snapshots (--destroy-incompatible)
            and roll back, release + destroy what the target schedule drops
    source: release + destroy what the source schedule drops and the target never needs
    create the target's missing parents (canmount=off), whether or not anything is sent
    send, send, ...        (full or incremental from the previous one; resumed first)
    when something was sent: hold the new common snapshot (target, then source), then
            release this backup's hold on every other snapshot of the pair, whatever
            its name
    destroy what was only kept until a newer common snapshot existed (target, source)
    mount a filesystem received for the first time (as zfs-autobackup 3.3)

so space is freed before receiving, and the newest common snapshot is held before the
old one is released or destroyed. Thinning never blocks sending: sends depend on the
thinning destroys only for their order (a thinning destroy that fails is reported and
the sends go on, see Destroy). A dataset that cannot be sent (incompatible snapshots, a
changed target) is still thinned, as zfs-autobackup 3.3 does before it finds out.
Every action of a dataset needs its pool's snapshot (when it gets one), and a child's
first action needs its parent's full send on the target.
The dependencies form a networkx DAG; the plan's order is its lexicographic topological
order, so the same input always gives the same plan.

Example: source a/b@x (common), new a/b@y; target t/a/b@x held; keep-target drops @x:
    send a/b@y (incremental from @x) -> hold t/a/b@y, a/b@y -> release t/a/b@x, a/b@x
    -> destroy t/a/b@x
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Optional

import attrs
import networkx as nx

from planner.actions import (
    SOURCE,
    TARGET,
    AbortResume,
    Action,
    Bookmark,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    DestroyDataset,
    Hold,
    Mount,
    Release,
    Restore,
    Rollback,
    Send,
    SetProperty,
)
from reconcile import bookmarks
from reconcile.desire import POST, PRE, Desired, Fate, MissingDesire, PairDesire, SendWish
from reconcile.gcpause import paused
from reconcile.job import Job
from reconcile.limits import ARG_BYTES, chunked
from reconcile.model import HostState, Side
from reconcile.never import assert_never
from reconcile.pair import sent_raw
from reconcile.schedule import age_words
from reconcile.scripts import received_unmountable


@attrs.frozen
class Problem:
    """A dataset that cannot be processed as asked; counts as a failure."""

    unit: str
    side: Side
    dataset: str
    message: str


#: what a note is about (Note.kind)
SNAPSHOT_NOTE, SKIPPED, KEPT, MISSING = "snapshot", "skipped", "kept", "missing"
NO_BOOKMARKS, OTHER_BOOKMARKS, CLONE = "no-bookmarks", "other-bookmarks", "clone"
#: a restore's case and why, and what comes after it (planner.restore)
RESTORE = "restore"


@attrs.frozen
class Note:
    """Something to tell about a dataset that needs no action (the classic log prints it).

    `kind`: SNAPSHOT_NOTE (why no new snapshot), SKIPPED (a snapshot not sent), KEPT (a
    snapshot the schedule drops but zfs would refuse to destroy), MISSING (what
    --destroy-missing decided), NO_BOOKMARKS (a source pool whose datasets run without
    bookmarks, and why: once per pool), OTHER_BOOKMARKS (our bookmarks of another tag
    that stay: once per tag), CLONE (a clone sent in full, and why), RESTORE (a
    restore's case and why)."""

    side: Side
    dataset: str
    text: str
    kind: str = SNAPSHOT_NOTE


@attrs.frozen
class Plan:
    actions: tuple[Action, ...] = ()
    #: depends[i]: indexes of the actions that action i needs (all smaller than i)
    depends: tuple[tuple[int, ...], ...] = ()
    problems: tuple[Problem, ...] = ()
    notes: tuple[Note, ...] = ()
    snapshot_name: Optional[str] = None

    @property
    def empty(self) -> bool:
        return not self.actions


#: Phases order the plan across datasets (within the dependencies): every dataset's
#: snapshot, then everything that frees space, then all sends, then all new holds, then
#: all releases of old holds, then what waited for the new common snapshots. Actions of
#: one kind and side thus stand together and can run as one command (`zfs hold TAG
#: a@x b@y ...`), and no old hold is released before every new one is placed.
class Phase(IntEnum):
    SNAPSHOT = 0
    PREPARE = 1
    CLEAN = 2
    SEND = 3
    HOLD = 4
    RELEASE = 5
    AFTER = 6


SNAPSHOT, PREPARE, CLEAN, SEND, HOLD, RELEASE, AFTER = Phase


def phase_of(action: Action) -> Phase:
    """The phase an action runs in, unless its builder says otherwise (a new action type
    must be placed here: mypy names this function when one is missing)."""
    if isinstance(action, CreateSnapshots):
        return SNAPSHOT
    if isinstance(action, (CreateParent, AbortResume)):
        return PREPARE
    if isinstance(action, Rollback):
        return CLEAN
    if isinstance(action, (Send, Restore)):
        return SEND
    # (with bookmarks the source's new common snapshot gets a bookmark, not a hold)
    if isinstance(action, (Hold, Bookmark)):
        return HOLD
    if isinstance(action, Release):
        return RELEASE
    if isinstance(action, (Mount, Destroy, DestroyDataset, DestroyBookmark, SetProperty)):
        return AFTER
    return assert_never(action)


class _Builder:
    def __init__(self) -> None:
        #: (need, index): the order's edges, made into the graph by `finish` at once
        self.edges: list[tuple[int, int]] = []
        self.actions: list[Action] = []
        self.phases: list[Phase] = []

    def add(
        self, action: Action, needs: Sequence[Optional[int]] = (), phase: Optional[Phase] = None
    ) -> int:
        index = len(self.actions)
        self.actions.append(action)
        self.phases.append(phase_of(action) if phase is None else phase)
        self.edges.extend((need, index) for need in needs if need is not None)
        return index

    def finish(
        self, problems: Sequence[Problem], notes: Sequence[Note], name: Optional[str]
    ) -> Plan:
        phases, added = self.phases, self.actions

        def key(i: int) -> tuple[int, int, int]:
            # within a phase, the target's actions first, then the source's
            return (phases[i], 0 if added[i].side == TARGET else 1, i)

        graph = nx.DiGraph()
        graph.add_nodes_from(range(len(added)))
        graph.add_edges_from(self.edges)
        order = list(nx.lexicographical_topological_sort(graph, key=key))
        position = {old: new for new, old in enumerate(order)}
        actions = tuple(self.actions[i] for i in order)
        depends = tuple(tuple(sorted(position[p] for p in graph.predecessors(i))) for i in order)
        return Plan(actions, depends, tuple(problems), tuple(notes), name)


def builder() -> _Builder:
    """An empty plan to add actions to (phases and dependencies order them); `finish`
    makes the Plan."""
    return _Builder()


def _snapshot_actions(builder: _Builder, desired: Desired) -> dict[str, int]:
    """One atomic `zfs snapshot` per pool (split only past the argument limit)."""
    by_pool: dict[str, list[str]] = {}
    for pair in desired.pairs:
        if pair.new_snapshot:
            by_pool.setdefault(pair.source.pool, []).append(pair.source.name)
    index: dict[str, int] = {}
    for pool, names in sorted(by_pool.items()):
        assert desired.snapshot_name is not None
        suffix = len(desired.snapshot_name) + 2
        chunks = list(chunked(names, ARG_BYTES, separator=suffix))
        for part, chunk in enumerate(chunks, 1):
            i = builder.add(
                CreateSnapshots(pool, desired.snapshot_name, tuple(chunk), part, len(chunks))
            )
            for name in chunk:
                index[name] = i
    return index


def _release_and_destroy(
    builder: _Builder,
    job: Job,
    side: Side,
    dataset: str,
    fates: Sequence[Fate],
    unit: str,
    prev: Optional[int],
    *,
    after: bool = False,
    required: bool = False,
) -> Optional[int]:
    """Release (if ours) and destroy the doomed snapshots: before sending (CLEAN), or
    `after` the new common snapshot is held (RELEASE, then AFTER)."""
    doomed = [f for f in fates if not f.keep]
    if not doomed:
        return prev
    for fate in doomed:
        if fate.held_by_us:
            release = Release(
                side, dataset, fate.snapshot, job.naming.hold_tag, unit, "before destroying it"
            )
            prev = builder.add(release, [prev], RELEASE if after else CLEAN)
    destroy = Destroy(
        side,
        dataset,
        tuple(f.snapshot for f in doomed),
        tuple(f.reason for f in doomed),
        unit,
        required=required,
    )
    return builder.add(destroy, [prev], AFTER if after else CLEAN)


def _kept_notes(side: Side, dataset: str, fates: Sequence[Fate]) -> list[Note]:
    return [
        Note(side, f"{dataset}@{f.snapshot}", f"kept: {f.kept_because}", KEPT)
        for f in fates
        if f.kept_because
    ]


@paused
def build_plan(job: Job, desired: Desired, source: HostState, target: Optional[HostState]) -> Plan:
    builder = _Builder()
    ctx = _Context(job, builder, target, _snapshot_actions(builder, desired))
    ctx.mapped = {pair.target_name for pair in desired.pairs}
    ctx.notes += [Note(SOURCE, pool, why, NO_BOOKMARKS) for pool, why in desired.no_bookmarks]
    # in target name order: a parent's first send comes before its children's, also
    # when --strip-path maps datasets of different source trees under each other
    for pair in _origins_first(sorted(desired.pairs, key=lambda p: (p.target_name, p.name))):
        if pair.snapshot_note:
            ctx.notes.append(Note(SOURCE, pair.name, pair.snapshot_note))
        if pair.clone_note:
            ctx.notes.append(Note(SOURCE, pair.name, f"sent in full: {pair.clone_note}", CLONE))
        for name, why in pair.skipped:
            ctx.notes.append(Note(SOURCE, f"{pair.name}@{name}", f"skipped: {why}", SKIPPED))
        ctx.notes += _kept_notes(SOURCE, pair.name, pair.source_fates)
        ctx.notes += _kept_notes(TARGET, pair.target_name, pair.target_fates)
        if job.remote.target_path is None:
            post = [f for f in pair.source_fates if f.phase == POST]
            _release_and_destroy(
                builder,
                job,
                SOURCE,
                pair.name,
                post,
                pair.name,
                ctx.snap_index.get(pair.name),
                after=True,
            )
        else:
            _pair_actions(ctx, pair)
    for missing in desired.missing:
        if missing.note:
            ctx.notes.append(Note(TARGET, missing.target.name, missing.note, MISSING))
        ctx.notes += _kept_notes(TARGET, missing.target.name, missing.fates)
        _missing(builder, job, missing)
    ctx.notes += _other_notes(job, desired.pairs)
    return builder.finish(ctx.problems, ctx.notes, desired.snapshot_name)


def _origins_first(pairs: Sequence[PairDesire]) -> list[PairDesire]:
    """`pairs` in order, but a clone received from an origin this run sends comes after
    that origin's pair, and the origin's pair after the pairs of its target's parents."""
    by_target = {p.target_name: p for p in pairs}
    by_name = {p.name: p for p in pairs}
    done: set[str] = set()
    result: list[PairDesire] = []

    def visit(pair: PairDesire, path: frozenset[str]) -> None:
        if pair.name in done or pair.name in path:
            return
        path = path | {pair.name}
        parts = pair.target_name.split("/")
        for i in range(1, len(parts)):
            parent = by_target.get("/".join(parts[:i]))
            if parent is not None:
                visit(parent, path)
        if pair.origin is not None and pair.origin.sent_by in by_name:
            visit(by_name[pair.origin.sent_by], path)
        done.add(pair.name)
        result.append(pair)

    for pair in pairs:
        visit(pair, frozenset())
    return result


@attrs.define
class _Context:
    job: Job
    builder: _Builder
    target: Optional[HostState]
    snap_index: dict[str, int]
    problems: list[Problem] = attrs.Factory(list)
    notes: list[Note] = attrs.Factory(list)
    #: target names of every selected dataset (each made by its own first send)
    mapped: set[str] = attrs.Factory(set)
    #: target dataset -> the action after which it exists (its first full send)
    created_by: dict[str, int] = attrs.Factory(dict)
    parent_made: dict[str, int] = attrs.Factory(dict)
    failed_targets: set[str] = attrs.Factory(set)
    #: target dataset -> its Mount action (a child's mount waits for its parent's)
    mounts: dict[str, int] = attrs.Factory(dict)
    #: (source dataset, snapshot) -> the send that puts it on the target
    sent: dict[tuple[str, str], int] = attrs.Factory(dict)

    def fail(self, pair: PairDesire, message: str) -> None:
        self.problems.append(Problem(pair.name, TARGET, pair.target_name, message))
        self.failed_targets.add(pair.target_name)

    def _ready(self, dataset: str) -> Optional[list[int]]:
        """What makes `dataset` exist on the target ([] if nothing needs to), or None
        when this run does not make it."""
        # (an unfinished full receive exists, but only once its resumed send is done)
        if dataset in self.created_by:
            return [self.created_by[dataset]]
        if dataset in self.parent_made:
            return [self.parent_made[dataset]]
        if dataset == self.job.remote.target_path or (
            self.target is not None and self.target.get(dataset) is not None
        ):
            return []
        return None

    def parent_needs(self, pair: PairDesire) -> Optional[list[int]]:
        """What the first send needs so the target's parents exist; None: a parent
        failed. As zfs-autobackup 3.3, missing parents are created (canmount=off) for
        every selected dataset not on the target yet, whether or not it is sent now, but
        not a parent that is itself the target of a selected dataset (its own send makes
        it)."""
        if pair.target is not None or not self.job.transfer.send or "/" not in pair.target_name:
            return []
        parent = pair.target_name.rsplit("/", 1)[0]
        if parent in self.failed_targets:
            return None
        ready = self._ready(parent)
        if ready is not None:
            return ready
        if parent in self.mapped:
            return []  # its own pair creates it (or fails, and then this send fails)
        missing = [parent]
        while "/" in missing[-1]:
            up = missing[-1].rsplit("/", 1)[0]
            if self._ready(up) is not None or up in self.mapped:
                break
            missing.append(up)
        above = self._ready(missing[-1].rsplit("/", 1)[0]) or []
        prev: Optional[int] = above[0] if above else None
        for name in reversed(missing):
            prev = self.builder.add(CreateParent(name, pair.name), [prev])
            self.parent_made[name] = prev
        return [self.parent_made[parent]]


def _pair_actions(ctx: _Context, pair: PairDesire) -> None:
    job, builder, unit, tname = ctx.job, ctx.builder, pair.name, pair.target_name
    parent_needs = ctx.parent_needs(pair)
    if parent_needs is None:
        ctx.fail(pair, f"its parent {tname.rsplit('/', 1)[0]} failed on the target")
        return
    prev = ctx.snap_index.get(pair.name)

    # before sending, in 3.3's order: thinning of both sides first (it never blocks, and a
    # dataset that can't be sent is thinned all the same), then what the sends need: the
    # incompatible snapshots gone and the changes after them rolled back, a stale resume
    # aborted
    pre_target = [f for f in pair.target_fates if f.phase == PRE]
    thinned = [f for f in pre_target if not f.required]
    prev = _release_and_destroy(builder, job, TARGET, tname, thinned, unit, prev)
    pre_source = [f for f in pair.source_fates if f.phase == PRE]
    prev = _release_and_destroy(builder, job, SOURCE, pair.name, pre_source, unit, prev)
    if pair.problem:
        ctx.fail(pair, pair.problem)
        return
    required = [f for f in pre_target if f.required]
    prev = _release_and_destroy(builder, job, TARGET, tname, required, unit, prev, required=True)
    if pair.rollback_to:
        why = (
            "incompatible snapshots destroyed"
            if pair.incompatible and job.transfer.destroy_incompatible
            else "target changed since its newest snapshot"
        )
        prev = builder.add(Rollback(tname, pair.rollback_to, unit, why), [prev])
    if pair.abort_resume:
        prev = builder.add(AbortResume(tname, unit, pair.abort_resume), [prev])

    origin_sent = None
    if pair.origin is not None and pair.origin.sent_by is not None:
        # (this run sends the origin snapshot first: the clone's receive waits for it)
        origin_sent = ctx.sent.get((pair.origin.sent_by, pair.origin.name))
        if origin_sent is None:
            ctx.fail(pair, f"its origin {pair.origin.snapshot} is not sent to the target")
            return
    full_send: Optional[int] = None
    for number, run in enumerate(_streams(pair.sends)):
        first, last = run[0], run[-1]
        send = Send(
            source_dataset=pair.name,
            target_dataset=tname,
            snapshot=last.snapshot,
            base=first.base,
            unit=unit,
            reason=last.reason if len(run) == 1 else f"target keeps all {len(run)}: {last.reason}",
            guid=last.guid,
            resume_token=first.resume_token,
            intermediates=tuple(w.snapshot for w in run[:-1]),
            raw=sent_raw(pair.source, job.transfer),
            decrypted=pair.source.encryption != "off" and job.transfer.decrypt,
            force=job.transfer.force and number == 0,
            volume=pair.source.type == "volume",
            from_bookmark=first.from_bookmark,
            from_origin=first.from_origin,
        )
        needs = [prev, *parent_needs] if number == 0 else [prev]
        if first.from_origin and origin_sent is not None:
            needs.append(origin_sent)
        prev = builder.add(send, needs)
        for snap in send.snapshots:
            ctx.sent[(pair.name, snap)] = prev
        # (a target without snapshots is an interrupted full receive: not there yet)
        if number == 0 and (pair.target is None or not pair.target.snapshots):
            ctx.created_by[tname] = prev
        if number == 0 and (send.base is None or send.from_origin):
            full_send = prev  # (also a resumed full send, and a clone's first)

    prev, released = _move_holds(ctx, pair, prev)

    # after sending (and bookmarking): what was kept only as the common snapshot, until
    # it was sent, or until its bookmark existed
    for side, dataset, fates in (
        (TARGET, tname, pair.target_fates),
        (SOURCE, pair.name, pair.source_fates),
    ):
        post = [
            # (a fate whose hold was moved away is no longer held by us; the others stay)
            attrs.evolve(f, held_by_us=False)
            if f.held_by_us and (side, f.snapshot) in released
            else f
            for f in fates
            if f.phase == POST and not f.keep
        ]
        prev = _release_and_destroy(builder, job, side, dataset, post, unit, prev, after=True)
    # (received with canmount=noauto or off, --clear-mountpoint: nothing to mount;
    # encrypted on receiving, --encrypt: its first mount writes to it (zfs upgrades its
    # space accounting, 85 KiB on OpenZFS 2.3), and zfs refuses the next incremental
    # receive: never mounted (3.3 mounts it, and its next run fails))
    unmountable = received_unmountable(job.transfer.set_properties)
    if job.transfer.encrypt and not sent_raw(pair.source, job.transfer):
        unmountable |= _encrypted_under(ctx.target, tname)
    if full_send is not None and pair.source.type != "volume" and not unmountable:
        parent = tname.rsplit("/", 1)[0]
        ctx.mounts[tname] = builder.add(Mount(tname, unit), [full_send, ctx.mounts.get(parent)])


def _encrypted_under(target: Optional[HostState], name: str) -> bool:
    """Is the nearest dataset above `name` that the target has encrypted (so a dataset
    received there without its own encryption properties, --encrypt, inherits it)?"""
    parent = name
    while "/" in parent:
        parent = parent.rsplit("/", 1)[0]
        found = target.datasets.get(parent) if target is not None else None
        if found is not None:
            return found.encryption != "off"
    return False


def _bookmarks(ctx: _Context, pair: PairDesire, prev: Optional[int]) -> Optional[int]:
    """The new common snapshot's bookmark (after its send), then the bookmarks of ours
    it supersedes (each after it exists; they never block what comes after)."""
    builder, unit = ctx.builder, pair.name
    if pair.bookmark is not None:
        snapshot, name = pair.bookmark
        why = f"base for {pair.target_name}"
        if pair.bookmark_copy_of is not None:
            why += f" (a copy: the chain rests on #{pair.bookmark_copy_of})"
        mark = Bookmark(pair.name, snapshot, name, unit, why, copy_of=pair.bookmark_copy_of)
        prev = builder.add(mark, [prev])
    for name in pair.superseded:
        why = f"superseded by #{pair.kept_bookmark}"
        builder.add(DestroyBookmark(pair.name, name, unit, why), [prev])
    deadline = ctx.job.thinning.destroy_orphan_bookmarks
    for other in pair.others:
        if other.orphan and deadline is not None:
            why = (
                f"orphan: no target of this run has tag {other.tag}, and its snapshot is "
                f"{age_words(other.age)} old (--destroy-orphan-bookmarks {age_words(deadline)})"
            )
            builder.add(DestroyBookmark(pair.name, other.bookmark.name, unit, why), [prev])
    return prev


def _other_notes(job: Job, pairs: Sequence[PairDesire]) -> list[Note]:
    """Our bookmarks of other tags that stay, one note per tag: another target's chain,
    or an orphan if that target is gone (one run sees only its own target)."""
    kept: dict[str, list[float]] = {}
    for pair in pairs:
        for other in pair.others:
            if not other.orphan:
                kept.setdefault(other.tag, []).append(other.age)
    deadline = job.thinning.destroy_orphan_bookmarks
    notes = []
    for tag, ages in sorted(kept.items()):
        count = f"{len(ages)} bookmark{'s' if len(ages) > 1 else ''}"
        text = f"{count} of another target path, the newest {age_words(min(ages))} old: kept"
        if deadline is None:
            text += " (if that target is gone, --destroy-orphan-bookmarks DEADLINE destroys them)"
        else:
            text += f" (younger than {age_words(deadline)}, or the base of this target's chain)"
        notes.append(Note(SOURCE, f"#...{bookmarks.SEPARATOR}{tag}", text, OTHER_BOOKMARKS))
    return notes


def _move_holds(
    ctx: _Context, pair: PairDesire, prev: Optional[int]
) -> tuple[Optional[int], set[tuple[str, str]]]:
    """The holds desire decided (reconcile.pair: the new common snapshot's, on each
    side), then the pair's bookmark, then the releases of the old holds. Returns the
    last action and the (side, snapshot) releases planned."""
    tag, builder, unit = ctx.job.naming.hold_tag, ctx.builder, pair.name
    datasets = {TARGET: pair.target_name, SOURCE: pair.name}
    for side, snapshot in pair.holds:
        prev = builder.add(Hold(side, datasets[side], snapshot, tag, unit), [prev])
    prev = _bookmarks(ctx, pair, prev)
    for side, snapshot in pair.releases:
        prev = builder.add(Release(side, datasets[side], snapshot, tag, unit), [prev])
    return prev, {(side, snapshot) for side, snapshot in pair.releases}


def _streams(sends: Sequence[SendWish]) -> list[list[SendWish]]:
    """Group sends into as few streams as possible.

    Consecutive incremental sends whose bases are the snapshots right before them on the
    source become one `zfs send -I @BASE DS@LAST` stream (every snapshot in between is
    wanted). A full send, a resumed send, and a send that skips snapshots start a new one:

        source A B C D E, target has A, all wanted   -> -I @A E (B C D E in one stream)
        source A B C D E, nothing on the target      -> full A, then -I @A E
        source A B C D E, target has A, C not wanted -> -i @A B, -i @B D, -i @D E
    (B->D skips C, so D stands alone: extending it would make `-I @B` send C.)
    """
    streams: list[list[SendWish]] = []
    for wish in sends:
        joinable = (
            streams
            and wish.adjacent
            and wish.resume_token is None
            # never extend a full send, a resumed send, or a step that skips snapshots
            and streams[-1][0].base is not None
            and streams[-1][0].adjacent
            and streams[-1][0].resume_token is None
        )
        if joinable:
            streams[-1].append(wish)
        else:
            streams.append([wish])
    return streams


def _missing(builder: _Builder, job: Job, missing: MissingDesire) -> None:
    name = missing.target.name
    prev = _release_and_destroy(
        builder, job, TARGET, name, missing.fates, name, None, required=missing.destroy
    )
    if missing.destroy:
        why = "missing on source past the --destroy-missing deadline"
        builder.add(DestroyDataset(name, name, why), [prev])
