"""Diff and plan: desired state -> ordered actions with dependencies. Pure.

For each dataset pair the actions form a chain, in this order:

    target: abort a stale resume, release + destroy what the target schedule drops
            (and incompatible snapshots with --destroy-incompatible), roll back
    source: release + destroy what the source schedule drops and the target never needs
    create the target's parent if nothing else will
    send, send, ...        (full or incremental from the previous one; resumed first)
    hold the new common snapshot (target, then source), then release the old one
    destroy what was only kept until a newer common snapshot existed (target, source)

so space is freed before receiving, and the newest common snapshot is held before the
old one is released or destroyed. Every action of a dataset needs its pool's snapshot
(when it gets one), and a child's first action needs its parent's full send on the target.
The dependencies form a networkx DAG; the plan's order is its lexicographic topological
order, so the same input always gives the same plan.

Example: source a/b@x (common), new a/b@y; target t/a/b@x held; keep-target drops @x:
    send a/b@y (incremental from @x) -> hold t/a/b@y, a/b@y -> release t/a/b@x, a/b@x
    -> destroy t/a/b@x
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import attrs
import networkx as nx

from planner.actions import (
    SOURCE,
    TARGET,
    AbortResume,
    Action,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyDataset,
    Hold,
    Release,
    Rollback,
    Send,
)
from reconcile.desire import POST, PRE, Desired, Fate, MissingDesire, PairDesire, SendWish
from reconcile.job import Job
from reconcile.limits import ARG_BYTES, chunked
from reconcile.model import HostState


@attrs.frozen
class Problem:
    """A dataset that cannot be processed as asked; counts as a failure."""

    unit: str
    side: str
    dataset: str
    message: str


@attrs.frozen
class Note:
    """Something to tell about a dataset that needs no action (the classic log prints it)."""

    side: str
    dataset: str
    text: str


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
SNAPSHOT, PREPARE, CLEAN, SEND, HOLD, RELEASE, AFTER = range(7)
_PHASE = {
    "snapshot": SNAPSHOT,
    "create-parent": PREPARE,
    "abort-resume": PREPARE,
    "rollback": CLEAN,
    "send": SEND,
    "hold": HOLD,
    "release": RELEASE,
    "destroy": AFTER,
    "destroy-dataset": AFTER,
}


class _Builder:
    def __init__(self) -> None:
        self.graph = nx.DiGraph()
        self.actions: list[Action] = []
        self.phases: list[int] = []

    def add(
        self, action: Action, needs: Sequence[Optional[int]] = (), phase: Optional[int] = None
    ) -> int:
        index = len(self.actions)
        self.actions.append(action)
        self.phases.append(_PHASE[action.kind] if phase is None else phase)
        self.graph.add_node(index)
        for need in needs:
            if need is not None:
                self.graph.add_edge(need, index)
        return index

    def finish(
        self, problems: Sequence[Problem], notes: Sequence[Note], name: Optional[str]
    ) -> Plan:
        phases, added = self.phases, self.actions

        def key(i: int) -> tuple[int, int, int]:
            # within a phase, the target's actions first, then the source's
            return (phases[i], 0 if added[i].side == TARGET else 1, i)

        order = list(nx.lexicographical_topological_sort(self.graph, key=key))
        position = {old: new for new, old in enumerate(order)}
        actions = tuple(self.actions[i] for i in order)
        depends = tuple(
            tuple(sorted(position[p] for p in self.graph.predecessors(i))) for i in order
        )
        return Plan(actions, depends, tuple(problems), tuple(notes), name)


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
    side: str,
    dataset: str,
    fates: Sequence[Fate],
    unit: str,
    prev: Optional[int],
    *,
    after: bool = False,
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
        side, dataset, tuple(f.snapshot for f in doomed), tuple(f.reason for f in doomed), unit
    )
    return builder.add(destroy, [prev], AFTER if after else CLEAN)


def build_plan(job: Job, desired: Desired, source: HostState, target: Optional[HostState]) -> Plan:
    builder = _Builder()
    ctx = _Context(job, builder, target, _snapshot_actions(builder, desired))
    for pair in sorted(desired.pairs, key=lambda p: p.name):
        if pair.snapshot_note and pair.snapshot_note != "--no-snapshot":
            ctx.notes.append(Note(SOURCE, pair.name, pair.snapshot_note))
        for name, why in pair.skipped:
            ctx.notes.append(Note(SOURCE, f"{pair.name}@{name}", f"skipped: {why}"))
        if job.target_path is None:
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
            ctx.notes.append(Note(TARGET, missing.target.name, missing.note))
        _missing(builder, job, missing)
    return builder.finish(ctx.problems, ctx.notes, desired.snapshot_name)


@attrs.define
class _Context:
    job: Job
    builder: _Builder
    target: Optional[HostState]
    snap_index: dict[str, int]
    problems: list[Problem] = attrs.Factory(list)
    notes: list[Note] = attrs.Factory(list)
    #: target dataset -> the action after which it exists (its first full send)
    created_by: dict[str, int] = attrs.Factory(dict)
    parent_made: dict[str, int] = attrs.Factory(dict)
    failed_targets: set[str] = attrs.Factory(set)

    def fail(self, pair: PairDesire, message: str) -> None:
        self.problems.append(Problem(pair.name, TARGET, pair.target_name, message))
        self.failed_targets.add(pair.target_name)

    def parent_needs(self, pair: PairDesire) -> Optional[list[int]]:
        """What the first send needs so the target's parent exists; None: parent failed."""
        if pair.target is not None or not pair.sends:
            return []
        parent = pair.target_name.rsplit("/", 1)[0]
        if parent in self.failed_targets:
            return None
        if parent in self.created_by:
            return [self.created_by[parent]]
        exists = self.target is not None and self.target.get(parent) is not None
        if exists or parent == self.job.target_path:
            return []
        if parent not in self.parent_made:
            self.parent_made[parent] = self.builder.add(CreateParent(parent, pair.name))
        return [self.parent_made[parent]]


def _pair_actions(ctx: _Context, pair: PairDesire) -> None:
    job, builder, unit, tname = ctx.job, ctx.builder, pair.name, pair.target_name
    tag = job.naming.hold_tag
    if pair.problem:
        ctx.fail(pair, pair.problem)
        return
    parent_needs = ctx.parent_needs(pair)
    if parent_needs is None:
        ctx.fail(pair, f"its parent {tname.rsplit('/', 1)[0]} failed on the target")
        return
    prev = ctx.snap_index.get(pair.name)

    # target, before sending
    if pair.abort_resume:
        prev = builder.add(AbortResume(tname, unit, pair.abort_resume), [prev])
    pre_target = [f for f in pair.target_fates if f.phase == PRE]
    prev = _release_and_destroy(builder, job, TARGET, tname, pre_target, unit, prev)
    if pair.rollback_to:
        why = "target changed since the common snapshot"
        prev = builder.add(Rollback(tname, pair.rollback_to, unit, why), [prev])
    # source, before sending
    pre_source = [f for f in pair.source_fates if f.phase == PRE]
    prev = _release_and_destroy(builder, job, SOURCE, pair.name, pre_source, unit, prev)

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
            raw=pair.source.encryption != "off" and not job.decrypt,
            force=job.force and number == 0,
            volume=pair.source.type == "volume",
        )
        prev = builder.add(send, [prev, *parent_needs] if number == 0 else [prev])
        # (a target without snapshots is an interrupted full receive: not there yet)
        if number == 0 and (pair.target is None or not pair.target.snapshots):
            ctx.created_by[tname] = prev

    # holds: the new common snapshot first, then release the old ones
    final = pair.final_common
    released: set[tuple[str, str]] = set()
    if job.holds and final:
        sides = (
            (TARGET, tname, pair.target.snapshots if pair.target else (), pair.target_fates),
            (SOURCE, pair.name, pair.source.snapshots, pair.source_fates),
        )
        for side, dataset, existing, _ in sides:
            if not any(s.name == final and tag in s.holds for s in existing):
                prev = builder.add(Hold(side, dataset, final, tag, unit), [prev])
        for side, dataset, _, fates in sides:
            for fate in fates:
                if fate.held_by_us and fate.snapshot != final and (fate.keep or fate.phase == POST):
                    prev = builder.add(Release(side, dataset, fate.snapshot, tag, unit), [prev])
                    released.add((side, fate.snapshot))

    # after sending: what was kept only as the common snapshot or until it was sent
    if pair.sends:
        for side, dataset, fates in (
            (TARGET, tname, pair.target_fates),
            (SOURCE, pair.name, pair.source_fates),
        ):
            post = [
                attrs.evolve(f, held_by_us=f.held_by_us and (side, f.snapshot) not in released)
                for f in fates
                if f.phase == POST and not f.keep
            ]
            prev = _release_and_destroy(builder, job, side, dataset, post, unit, prev, after=True)


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
    prev = _release_and_destroy(builder, job, TARGET, name, missing.fates, name, None)
    if missing.destroy:
        why = "missing on source past the --destroy-missing deadline"
        builder.add(DestroyDataset(name, name, why), [prev])
