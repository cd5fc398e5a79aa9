"""One source dataset and its target: what to send, what each side keeps, what stops it.
Pure; zfs-autobackup 3.3's sync_snapshots as values (see reconcile.desire for the rules
and a worked example).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Optional

import attrs

from reconcile import bookmarks, clones
from reconcile import graph as snapgraph
from reconcile.fates import POST, PRE, Fate, fate, pinned, thin_names
from reconcile.job import Thinning, Transfer
from reconcile.model import Bookmark, Dataset, ResumeInfo, Side, Snapshot
from reconcile.naming import Naming


@attrs.frozen
class SendWish:
    snapshot: str
    guid: Optional[int]
    #: incremental base (source snapshot name, or bookmark name with `from_bookmark`),
    #: None for a full send
    base: Optional[str]
    reason: str
    #: resume this send with the target's token
    resume_token: Optional[str] = None
    #: the base is the snapshot right before this one on the source: nothing in between
    #: would be sent along by `zfs send -I`
    adjacent: bool = False
    #: `base` is a bookmark of the source dataset
    from_bookmark: bool = False
    #: `base` is the origin snapshot of this clone (`DATASET@SNAPSHOT`, another dataset)
    from_origin: bool = False


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
    #: this target's bookmark tag; None: the pair runs without bookmarks
    bookmark_tag: Optional[str] = None
    #: `common`'s source side is a bookmark (no source snapshot has the target's guid)
    common_bookmark: bool = False
    #: (snapshot, bookmark name): the source bookmark this run makes of the newest
    #: common snapshot
    bookmark: Optional[tuple[str, str]] = None
    #: our bookmarks of this target that the new one supersedes (destroyed after it exists)
    superseded: tuple[str, ...] = ()
    #: the bookmark of ours this target's chain rests on after the run
    kept_bookmark: Optional[str] = None
    #: `bookmark` is made as a copy of this bookmark (the chain rests on someone else's
    #: bookmark: `zfs bookmark DS#THEIRS DS#OURS`), not of the snapshot
    bookmark_copy_of: Optional[str] = None
    #: our bookmarks of other targets' tags (orphans go with --destroy-orphan-bookmarks)
    others: tuple[bookmarks.Other, ...] = ()
    #: (side, snapshot): gets this backup's hold once the sends are done (target first)
    holds: tuple[tuple[Side, str], ...] = ()
    #: (side, snapshot): this backup's hold is released, after the new holds and bookmark
    releases: tuple[tuple[Side, str], ...] = ()
    #: a new clone's first send is from this origin snapshot
    origin: Optional[clones.Origin] = None
    #: why a clone is sent in full
    clone_note: Optional[str] = None

    @property
    def name(self) -> str:
        return self.source.name


@attrs.frozen
class _Link:
    """One snapshot of the source chain as it will be after snapshotting (`snapshot` is
    None for the one this run takes)."""

    name: str
    guid: Optional[int]
    snapshot: Optional[Snapshot]


def sent_raw(source: Dataset, transfer: Transfer) -> bool:
    """Sent raw (zfs send -w): an encrypted source without --decrypt. (The one statement
    of the rule: the bookmark check, the send action and its compiled -w follow it.)"""
    return source.encryption != "off" and not transfer.decrypt


@attrs.frozen
class PairInput:
    """What one pair's decisions read: the job's parts they need, and what was observed."""

    naming: Naming
    thinning: Thinning
    transfer: Transfer
    source: Dataset
    target_name: str
    target: Optional[Dataset]
    new: Optional[str]
    note: Optional[str]
    now: float
    resume: Mapping[str, ResumeInfo]
    #: this target's bookmark tag (the target path's guid); None: no bookmarks
    bookmark_tag: Optional[str] = None
    #: snapshots sent even where the target schedule skips them (origins of new clones)
    must_send: Mapping[str, str] = attrs.Factory(dict)
    #: a new clone: its first send is from this origin snapshot
    origin: Optional[clones.Origin] = None
    clone_note: Optional[str] = None
    #: no common snapshot because `zfs promote` moved them away: the message and fix
    promoted: Optional[str] = None
    #: the target path's tag when source bookmarks may be bases (with --no-bookmarks and
    #: --no-guid-check too: an existing bookmark is used, none is made or destroyed)
    base_tag: Optional[str] = None

    @property
    def raw(self) -> bool:
        return sent_raw(self.source, self.transfer)


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


@attrs.frozen
class _Chain:
    """The source chain as it will be after snapshotting, and where the pair stands."""

    links: tuple[_Link, ...]
    #: the newest common snapshot's name on each side (None: no common snapshot); on the
    #: source it may be a bookmark (`mark`)
    common_src: Optional[str]
    common_tgt: Optional[str]
    common: Optional[Snapshot]
    #: the source bookmark the chain rests on, when no source snapshot has a newer
    #: snapshot of the target's guid
    mark: Optional[Bookmark] = None

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """link name -> index (made once: before_common asks for every snapshot)."""
        return {link.name: i for i, link in enumerate(self.links)}

    def after_common(self) -> tuple[_Link, ...]:
        if self.mark is not None:
            txg = self.mark.createtxg
            # (zfs sends from a bookmark only to a later snapshot: openzfs #12657)
            return tuple(
                link
                for link in self.links
                if link.snapshot is None or link.snapshot.createtxg > txg
            )
        start = self.position[self.common_src] + 1 if self.common_src else 0
        return self.links[start:]

    def before_common(self, snap: Snapshot) -> bool:
        """`snap` is older than the common snapshot (or bookmark)."""
        if self.mark is not None:
            return snap.createtxg <= self.mark.createtxg
        if self.common_src is None:
            return False
        return self.position[snap.name] < self.position[self.common_src]


def _chain(pin: PairInput, graph: snapgraph.SnapshotGraph) -> Optional[_Chain]:
    """The chain and its newest common snapshot: by guid (by name with
    --no-guid-check), as 3.3; with bookmarks, a source bookmark whose guid is a newer
    target snapshot's than any source snapshot's is the base instead (by guid only; a
    snapshot is preferred when both have it). None when the target has snapshots but
    none in common."""
    ds, tds = pin.source, pin.target
    if pin.transfer.guid_check:
        common = snapgraph.latest_common(graph, ds, tds)
    else:
        common = snapgraph.latest_common_by_name(ds, tds)
    links = [_Link(s.name, s.guid, s) for s in ds.snapshots]
    if pin.new:
        links.append(_Link(pin.new, None, None))
    found = None
    if pin.base_tag is not None and tds is not None:
        found = bookmarks.base(ds, tds, pin.base_tag, pin.naming)
        if found is not None and common is not None and found[1].createtxg <= common[1].createtxg:
            found = None  # a snapshot is as new: it is the base
    if found is not None:
        mark, target_snap = found
        return _Chain(tuple(links), mark.name, target_snap.name, target_snap, mark)
    if tds is not None and tds.snapshots and common is None:
        return None
    return _Chain(
        tuple(links),
        common[0].name if common else None,
        common[1].name if common else None,
        common[1] if common else None,
    )


def _target_schedule(
    pin: PairInput,
    existing: Sequence[Snapshot],
    candidates: Sequence[_Link],
    excluded: Mapping[str, str],
) -> dict[str, tuple[bool, str]]:
    """The target schedule over what the target has and what it would receive (as 3.3),
    but never the snapshots --exclude-snapshot-pattern keeps from being sent (3.3 counts
    them: a deliberate difference)."""
    future = [s.name for s in existing if pin.naming.timestamp(s.name) is not None]
    future += [
        c.name
        for c in candidates
        if pin.naming.timestamp(c.name) is not None and c.name not in excluded
    ]
    return thin_names(
        pin.thinning.keep_target, future, [pin.naming.timestamp(n) or 0.0 for n in future], pin.now
    )


def pair(pin: PairInput, graph: snapgraph.SnapshotGraph) -> PairDesire:
    """One source dataset and its target: 3.3's sync_snapshots as values. The common
    snapshot, what is sent (what the target schedule keeps), each side's thinning, the
    target's incompatible snapshots, the resume token, the rollback, or what stops it."""
    base = PairDesire(
        source=pin.source,
        target_name=pin.target_name,
        target=pin.target,
        new_snapshot=pin.new,
        snapshot_note=pin.note,
        bookmark_tag=pin.bookmark_tag,
        origin=pin.origin,
        clone_note=pin.clone_note,
    )
    chain = _chain(pin, graph)
    if chain is None:
        return attrs.evolve(base, problem=pin.promoted or _unlinked(pin))
    common_src, common_tgt = chain.common_src, chain.common_tgt
    candidates = [
        link
        for link in chain.after_common()
        if pin.transfer.other_snapshots
        or pin.naming.timestamp(link.name) is not None
        or link.name in pin.must_send
    ]
    existing, incompatible = split_target(pin.target, chain.common, pin.raw)
    excluded = _excluded(pin.transfer, pin.source.name, candidates)
    target_verdicts = _target_schedule(pin, existing, candidates, excluded)
    for name, clone in pin.must_send.items():
        target_verdicts[name] = (True, f"origin of {clone}")

    problem = _blocking_problem(pin, incompatible)
    if problem:
        sends: list[SendWish] = []
        skipped = [(c.name, why) for c in candidates if (why := excluded.get(c.name))]
    else:
        sends, skipped = _sends(pin, chain, candidates, excluded, target_verdicts)
    abort, sends = _resume(pin, sends) if not problem else (None, sends)
    rollback_to = None
    if not problem:
        # (to the newest snapshot thinning leaves: thinning goes first)
        thinned = {
            f.snapshot
            for f in _target_fates(pin, existing, incompatible, common_tgt, True, target_verdicts)
            if not f.keep and f.phase == PRE
        }
        remaining = [s for s in existing if s.name not in thinned]
        rollback_to, problem = _rollback(pin, remaining, incompatible, sends)
    mark = _Bookmarking()
    if not problem:
        mark = _bookmarking(pin, chain, sends)
        problem = mark.problem
    if problem:
        sends, mark = [], _Bookmarking()
    final_common = sends[-1].snapshot if sends else common_tgt if chain.mark else common_src
    others: tuple[bookmarks.Other, ...] = ()
    if pin.bookmark_tag is not None:
        keep = chain.mark.name if chain.mark is not None else None
        others = bookmarks.others(
            pin.source, pin.bookmark_tag, pin.naming, pin.now,
            None if problem else pin.thinning.destroy_orphan_bookmarks, keep,
        )  # fmt: skip
    source_fates = _source_fates(
        pin, chain, final_common, {w.snapshot for w in sends}, target_verdicts, mark.covers,
        others,
    )  # fmt: skip
    target_fates = _target_fates(
        pin, existing, incompatible, common_tgt, not sends, target_verdicts
    )
    decided = attrs.evolve(
        base,
        common=(common_src, common_tgt) if common_src and common_tgt else None,
        common_bookmark=chain.mark is not None,
        sends=tuple(sends),
        skipped=tuple(skipped),
        source_fates=tuple(source_fates),
        target_fates=tuple(target_fates),
        incompatible=tuple(s.name for s in incompatible),
        abort_resume=abort,
        rollback_to=rollback_to,
        final_common=final_common,
        problem=problem,
        bookmark=mark.create,
        superseded=mark.superseded,
        kept_bookmark=mark.kept,
        bookmark_copy_of=mark.copy_of,
        others=others,
    )
    holds, releases = _hold_moves(pin, decided)
    return attrs.evolve(decided, holds=holds, releases=releases)


def _hold_moves(pin: PairInput, pair: PairDesire) -> tuple[_Moves, _Moves]:
    """As zfs-autobackup 3.3, holds change only when something was sent: the newest
    sent snapshot is held on both sides, then this backup's hold is released from the
    previous common snapshot, whatever its name (a foreign common snapshot of
    --other-snapshots, one from before --snapshot-format changed). Other snapshots keep
    their holds: on the source one may be the common snapshot of another target of the
    same backup name. With bookmarks the source gets no hold but the bookmark (made
    between the new holds and the releases; while a snapshot is sent, zfs send itself
    keeps it from being destroyed); an old hold of ours on the previous common snapshot
    is still released. A snapshot thinning destroys first keeps its hold (the destroy
    releases it). Decided here, beside the bookmark, so one stage owns the chain."""
    tag, final = pin.naming.hold_tag, pair.final_common
    if not (pin.transfer.holds and pair.sends and final):
        return (), ()
    doomed_first = {
        (side, f.snapshot)
        for side, fates in ((Side.TARGET, pair.target_fates), (Side.SOURCE, pair.source_fates))
        for f in fates
        if not f.keep and f.phase == PRE
    }
    common = pair.common or (None, None)
    sides = (
        (Side.TARGET, pair.target.snapshots if pair.target else (), common[1]),
        (Side.SOURCE, pair.source.snapshots, common[0]),
    )
    holds = tuple(
        (side, final)
        for side, existing, _ in sides
        if not (
            side == Side.SOURCE and (pair.bookmark_tag is not None or pin.transfer.read_only_source)
        )
        and not any(s.name == final and tag in s.holds for s in existing)
    )
    releases = tuple(
        (side, snap.name)
        for side, existing, old in sides
        # (the source's base is a bookmark: no source snapshot of it to release)
        if not (side == Side.SOURCE and (pair.common_bookmark or pin.transfer.read_only_source))
        for snap in existing
        if snap.name == old != final and tag in snap.holds and (side, old) not in doomed_first
    )
    return holds, releases


#: (side, snapshot) pairs: the holds placed, or released
_Moves = tuple[tuple[Side, str], ...]


def _unlinked(pin: PairInput) -> str:
    """Why there is no base, and what to do. Destroying the target is advised only
    when nothing on the source (a snapshot or a bookmark) has the guid of a target
    snapshot: then nothing links the two sides any more."""
    assert pin.target is not None
    on_target = {s.guid: s.name for s in pin.target.snapshots}
    linked = [(f"@{s.name}", s.guid) for s in pin.source.snapshots if s.guid in on_target]
    linked += [(f"#{b.name}", b.guid) for b in pin.source.bookmarks if b.guid in on_target]
    if not linked:
        return (
            "Can't find a common snapshot with the target: you probably need to destroy "
            "the target dataset to fix this."
        )
    name, guid = linked[-1]
    return (
        f"Can't find a common snapshot with the target by this run's rules, but the "
        f"source's {pin.source.name}{name} has the guid of the target's "
        f"{pin.target.name}@{on_target[guid]}: the two are still linked, so don't destroy "
        "the target; run without --no-guid-check (and with bookmarks) to go on "
        "incrementally."
    )


@attrs.frozen
class _Bookmarking:
    """What the pair does with its bookmarks."""

    #: (snapshot, bookmark name) to make
    create: Optional[tuple[str, str]] = None
    #: our bookmarks of this target that go once it exists
    superseded: tuple[str, ...] = ()
    #: the source snapshot whose bookmark exists, or will (it may be thinned then)
    covers: Optional[str] = None
    #: the bookmark of ours that stays
    kept: Optional[str] = None
    problem: Optional[str] = None
    #: `create` copies this bookmark (someone else's, the chain's base)
    copy_of: Optional[str] = None


def _bookmarking(pin: PairInput, chain: _Chain, sends: Sequence[SendWish]) -> _Bookmarking:
    """The newest common snapshot gets this target's bookmark (made after its send, or
    now if a run stopped before it or predates bookmarks); the older bookmarks of ours
    with this tag go once it exists. A bookmark of that name with another guid stops
    the dataset (nothing of it is destroyed). A chain that rests on someone else's
    bookmark (another target's, another tool's) gets ours as a copy of it, so it no
    longer depends on theirs."""
    tag = pin.bookmark_tag
    if tag is None:
        return _Bookmarking()
    source = pin.source
    mine = [
        m for b in source.bookmarks if (m := bookmarks.ours(pin.naming, b, tag)) and m.tag == tag
    ]
    if not sends:
        base = chain.mark
        if base is not None and any(m.bookmark.name == base.name for m in mine):
            # the chain rests on our bookmark already: the older ones of ours go
            older = tuple(m.bookmark.name for m in mine if m.bookmark.createtxg < base.createtxg)
            return _Bookmarking(superseded=older, kept=base.name)
        if chain.common_src is None:
            return _Bookmarking()
        copy_of = None
        guid: Optional[int]
        txg: Optional[int]
        if base is not None:
            # (the target has the snapshot under the source's name)
            assert chain.common_tgt is not None
            name, guid, txg = chain.common_tgt, base.guid, base.createtxg
            copy_of = base.name
        else:
            snap = source.snapshot(chain.common_src)
            assert snap is not None
            name, guid, txg = chain.common_src, snap.guid, snap.createtxg
    else:
        copy_of = None
        last = sends[-1]
        name, guid = last.snapshot, last.guid
        found = source.snapshot(last.snapshot)
        txg = found.createtxg if found is not None else None
    wanted = bookmarks.bookmark_name(name, tag)
    there = next((b for b in source.bookmarks if b.name == wanted), None)
    if there is not None and (guid is None or there.guid != guid):
        return _Bookmarking(
            problem=f"Bookmark {source.name}#{wanted} exists but is of another snapshot "
            f"(guid {there.guid}): destroy it (zfs destroy {source.name}#{wanted}), or use "
            "--no-bookmarks."
        )
    older = tuple(
        m.bookmark.name
        for m in mine
        if m.bookmark.name != wanted and (txg is None or m.bookmark.createtxg < txg)
    )
    create = None if there is not None else (name, wanted)
    if copy_of is not None:
        # (no source snapshot of it: nothing for the source schedule to decide)
        return _Bookmarking(create, older, None, wanted, copy_of=copy_of if create else None)
    return _Bookmarking(create, older, name, wanted)


def _excluded(transfer: Transfer, dataset: str, candidates: Sequence[_Link]) -> dict[str, str]:
    """Candidates that --exclude-snapshot-pattern keeps from being sent -> why."""
    patterns = [re.compile(p) for p in transfer.exclude_snapshot_patterns]
    return {
        c.name: "matches --exclude-snapshot-pattern"
        for c in candidates
        if any(p.search(f"{dataset}@{c.name}") for p in patterns)
    }


def _blocking_problem(pin: PairInput, incompatible: Sequence[Snapshot]) -> Optional[str]:
    """A problem that stops the dataset's sends; its thinning still happens (as 3.3,
    which thins both sides before it finds out)."""
    tds = pin.target
    kept = [(s.name, why) for s in incompatible if (why := pinned(pin.naming, s))]
    if incompatible and pin.transfer.destroy_incompatible and kept:
        listing = "; ".join(f"{name} {why}" for name, why in kept)
        return (
            f"Incompatible snapshots on the target can't be destroyed: {listing}. "
            "Remove what keeps them, then run again."
        )
    if incompatible and not pin.transfer.destroy_incompatible:
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
        and not pin.transfer.force
        and pin.transfer.send
    ):
        return (
            f"Target dataset {tds.name} exists but has no snapshots: a full receive "
            "would overwrite it. Destroy it, or use --force."
        )
    return None


def _sends(
    pin: PairInput,
    chain: _Chain,
    candidates: Sequence[_Link],
    excluded: Mapping[str, str],
    target_verdicts: Mapping[str, tuple[bool, str]],
) -> tuple[list[SendWish], list[tuple[str, str]]]:
    """The candidates the target schedule keeps, each from the one sent before it (the
    first from the common snapshot or bookmark)."""
    sends: list[SendWish] = []
    skipped: list[tuple[str, str]] = []
    if not pin.transfer.send:
        return sends, skipped
    links = chain.links
    position = chain.position
    prev = chain.common_src
    origin = pin.origin if prev is None else None
    if origin is not None:
        prev = origin.snapshot
    for link in candidates:
        if link.name in excluded:
            skipped.append((link.name, excluded[link.name]))
            continue
        keep, reason = target_verdicts.get(link.name, (True, "not made by this backup"))
        if not keep:
            skipped.append((link.name, f"target schedule skips it: {reason}"))
            continue
        at = position[link.name]
        from_mark = chain.mark is not None and not sends
        # (-I from a bookmark is refused by zfs: a bookmark base is never "adjacent")
        adjacent = not from_mark and prev is not None and at > 0 and links[at - 1].name == prev
        sends.append(
            SendWish(
                link.name, link.guid, prev, f"target keeps it: {reason}",
                adjacent=adjacent, from_bookmark=from_mark,
                from_origin=origin is not None and not sends,
            )
        )  # fmt: skip
        prev = link.name
    return sends, skipped


def _lacking(
    ours: Sequence[Snapshot], new: Optional[str], others: Sequence[bookmarks.Other]
) -> tuple[str, ...]:
    """The other known targets (tags of our bookmarks that stay) that lack the newest
    snapshot of ours (`new`, or the last of `ours`): it was taken after their newest
    bookmark."""
    if new is None and not ours:
        return ()
    newest_txg = None if new is not None else ours[-1].createtxg
    have: dict[str, int] = {}
    for other in others:
        if not other.orphan:
            txg = other.bookmark.createtxg
            have[other.tag] = max(have.get(other.tag, txg), txg)
    return tuple(tag for tag, txg in sorted(have.items()) if newest_txg is None or txg < newest_txg)


def _pinned_by(lacking: Sequence[str]) -> str:
    s = "s" if len(lacking) > 1 else ""
    have = "have" if len(lacking) > 1 else "has"
    return f"target{s} {', '.join(lacking)} {have} not received it"


def _source_fates(
    pin: PairInput,
    chain: _Chain,
    final_common: Optional[str],
    sent: set[str],
    target_verdicts: Mapping[str, tuple[bool, str]],
    bookmarked: Optional[str],
    others: Sequence[bookmarks.Other] = (),
) -> list[Fate]:
    """With `bookmarked` (the snapshot whose bookmark keeps this target's chain), the
    source schedule decides that snapshot too: it is destroyed after its bookmark exists
    (so --keep-source=0 keeps no snapshot at all). But the newest snapshot of ours stays
    while another known target (`others`: our bookmarks of other tags) has not received
    it: that target goes on from its bookmark to it when it comes back."""
    ours = [
        link.snapshot
        for link in chain.links
        if link.snapshot and pin.naming.timestamp(link.name) is not None
    ]
    names = [s.name for s in ours] + ([pin.new] if pin.new else [])
    stamps = [pin.naming.timestamp(n) or 0.0 for n in names]
    verdicts = thin_names(
        pin.thinning.keep_source, names, stamps, pin.now, keep_newest=not bookmarked
    )
    lacking = _lacking(ours, pin.new, others)
    kept_for_others = None
    if names and lacking and not verdicts[names[-1]][0]:
        kept_for_others = names[-1]
        verdicts[kept_for_others] = (True, _pinned_by(lacking))
    common_src = None if chain.mark else chain.common_src
    fates = []
    for snap in ours:
        keep, reason = verdicts[snap.name]
        drop = f"source schedule drops it ({reason})"
        target_wants = target_verdicts.get(snap.name, (False, ""))[0]
        if snap.name == kept_for_others:
            fates.append(Fate(snap.name, True, reason, kept_because=reason))
        elif snap.name == final_common and snap.name == bookmarked and not keep:
            fates.append(
                fate(pin.naming, snap, False, f"{drop}; its bookmark keeps the chain", POST)
            )
        elif snap.name == final_common:
            fates.append(fate(pin.naming, snap, True, "newest common snapshot"))
        elif keep:
            fates.append(fate(pin.naming, snap, True, reason))
        elif snap.name == common_src:
            # replaced as common snapshot by a newer one: destroy after that one is held
            fates.append(fate(pin.naming, snap, False, drop, POST))
        elif chain.before_common(snap) or not target_wants:
            fates.append(fate(pin.naming, snap, False, drop, PRE))
        elif snap.name in sent:
            fates.append(fate(pin.naming, snap, False, f"{drop}, once sent", POST))
        else:
            fates.append(fate(pin.naming, snap, True, "the target still needs it"))
    if pin.new and pin.new == kept_for_others:
        why = verdicts[pin.new][1]
        fates.append(Fate(pin.new, True, why, kept_because=why))
    elif pin.new and pin.new == bookmarked and not verdicts[pin.new][0]:
        why = f"source schedule drops it ({verdicts[pin.new][1]}); its bookmark keeps the chain"
        fates.append(Fate(pin.new, False, why, POST))
    return fates


def _target_fates(
    pin: PairInput,
    existing: Sequence[Snapshot],
    incompatible: Sequence[Snapshot],
    common_tgt: Optional[str],
    common_stays: bool,
    target_verdicts: Mapping[str, tuple[bool, str]],
) -> list[Fate]:
    fates = []
    for snap in existing:
        if pin.naming.timestamp(snap.name) is None:
            fates.append(Fate(snap.name, True, "not made by this backup"))
            continue
        keep, reason = target_verdicts[snap.name]
        drop = f"target schedule drops it ({reason})"
        if snap.name == common_tgt and common_stays:
            fates.append(fate(pin.naming, snap, True, "newest common snapshot"))
        elif keep:
            fates.append(fate(pin.naming, snap, True, reason))
        else:
            fates.append(
                fate(pin.naming, snap, False, drop, POST if snap.name == common_tgt else PRE)
            )
    if pin.transfer.destroy_incompatible:
        for snap in incompatible:
            fates.append(
                fate(
                    pin.naming,
                    snap,
                    False,
                    "incompatible (--destroy-incompatible)",
                    PRE,
                    required=True,
                )
            )
    return fates


def _resume(pin: PairInput, sends: list[SendWish]) -> tuple[Optional[str], list[SendWish]]:
    """(why the target's resume token is aborted, the sends with the token on the one it
    resumes). Without --no-send a token is resumed when it belongs to the first send:
    that dataset and snapshot, that guid; otherwise it is aborted. With --no-send it is
    left alone: aborting would delete a partially received first backup."""
    tds = pin.target
    if tds is None or not tds.resume_token or not pin.transfer.send:
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
    pin: PairInput,
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
    tds = pin.target
    if tds is None or not existing:
        return None, None
    newest = existing[-1].name
    if incompatible and pin.transfer.destroy_incompatible:
        return newest, None
    transfers = bool(sends) and not pin.transfer.force
    if not transfers or tds.written == 0:
        return None, None
    if pin.transfer.rollback:
        return newest, None
    if sends[0].resume_token is not None:
        return None, None
    return None, (
        f"Target dataset {tds.name} was changed since its newest snapshot "
        f"({tds.written} bytes written): use --rollback to discard those changes "
        "(or set readonly=on on the target to prevent this)."
    )
