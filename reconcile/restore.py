"""Restore, decided: for a dataset of the backup (and with --recursive its children), which
copy on the target, which snapshot of it, and what happens to the dataset it restores
into. Pure: the hosts' state comes in, one `RestoreDesire` per dataset goes out, and
nothing is decided later (the plan says which case applies and why).

    the destination is gone                 -> FULL: the chosen snapshot, sent in full
    it exists and has a snapshot of the
    copy's chain (same guid), with --force  -> INCREMENTAL: rolled back to that snapshot
                                               (`zfs rollback -r`), then the rest, or
                                               ROLLBACK when it has the chosen one itself
    it exists, without --force              -> REFUSED (what --force would destroy)
    it exists, no snapshot in common        -> REFUSED (use --to): nothing on a guess

Whatever the case, the restored snapshot keeps the backup's guid, so it is the common
snapshot of the next backup, which is incremental.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Optional

import attrs

from reconcile.errors import UsageError, quoted
from reconcile.job import Job
from reconcile.mapping import target_name
from reconcile.model import Dataset, HostState, Snapshot
from reconcile.zfs_names import under

#: --snapshot as a time: "2020-02-18", "2020-02-18 17:00", "2020-02-18 17:00:05" (local)
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")


@attrs.frozen
class RestoreRequest:
    """What the command line asks: the source dataset (as named on the source host)."""

    dataset: str
    #: a snapshot name, or a time (the newest snapshot at or before it); None: the newest
    snapshot: Optional[str] = None
    #: restore beside the original, as this dataset on the source host
    to: Optional[str] = None
    recursive: bool = False
    force: bool = False
    #: --raw: an --encrypt backup's copies restore raw too (encrypted with the target's key)
    raw: bool = False

    @property
    def destination(self) -> str:
        return self.to or self.dataset


class Case(enum.Enum):
    FULL = "full"
    INCREMENTAL = "incremental"
    ROLLBACK = "rollback"
    #: the destination is at the chosen snapshot already, and nothing was written since
    CURRENT = "current"
    REFUSED = "refused"


@attrs.frozen
class RestoreDesire:
    #: the copy on the target
    copy: Dataset
    #: where it is restored, on the source host
    destination: str
    snapshot: str
    case: Case
    #: which case applies, and why (the plan says it)
    why: str
    #: the snapshot both have (INCREMENTAL, ROLLBACK)
    base: Optional[str] = None
    #: the destination's snapshots after `base` that the restore destroys
    lost: tuple[str, ...] = ()
    #: ... those of them this backup holds (released first: zfs destroys no held snapshot)
    release_first: tuple[str, ...] = ()
    #: the destination's bookmarks after `base` (ROLLBACK: `zfs rollback -r` destroys them)
    lost_bookmarks: tuple[str, ...] = ()
    #: bytes written on the destination since its newest snapshot (lost by the rollback)
    lost_written: int = 0
    #: the copy's snapshots after the chosen one (the next backup's business)
    newer: tuple[str, ...] = ()
    #: sent raw (an encrypted copy of an encrypted source: the source's key decrypts it)
    raw: bool = False
    #: raw: the copy's keylocation (None: its key is its encryption root's), which the
    #: restored dataset gets
    keylocation: Optional[str] = None
    #: raw: the properties set on the copy on the target (the backup's -o overrides, the
    #: admin's) over no received value: left out of the restore (`zfs recv -x`) ...
    leave_out: tuple[str, ...] = ()
    #: ... and over a received value (the source's): put back (`zfs recv -o P=V`)
    put_back: tuple[str, ...] = ()
    #: an encrypted copy restored decrypted (--encrypt backups): zfs sends no properties
    #: of it (`zfs send -b` needs -w for an encrypted dataset)
    decrypted: bool = False
    #: the selection property's value the copy received: set again on the destination
    selection: Optional[str] = None
    #: restored beside the original (--to): its selection value stays as received
    beside: bool = False
    #: the copy's snapshot carries the restore's hold already (an earlier restore that
    #: ended without releasing it): neither held nor released by this one
    held_already: bool = False


def restore_tag(job: Job) -> str:
    """The hold tag of a restore: the backup's own, marked (a backup run keeps a snapshot
    someone else holds, and never releases this tag)."""
    return f"{job.naming.hold_tag}:restore"


def copy_root(job: Job, request: RestoreRequest) -> str:
    """Where the backup keeps `request.dataset` (the backup's own mapping)."""
    assert job.remote.target_path is not None
    return target_name(request.dataset, job.remote.target_path, job.remote.strip_path)


def no_copy(request: RestoreRequest, root: str) -> UsageError:
    """The error of a restore of a dataset the backup has no copy of."""
    return UsageError(
        f"Nothing to restore: the backup has no copy of {request.dataset} "
        f"({root} does not exist on the target)"
    )


def choose_snapshot(job: Job, copy: Dataset, spec: Optional[str]) -> Snapshot:
    """The copy's snapshot a --snapshot value means: its name, or a time (the newest of
    this backup's snapshots at or before it); None: the newest snapshot of the copy."""
    if not copy.snapshots:
        raise UsageError(f"Nothing to restore: {copy.name} has no snapshots")
    if spec is None:
        return copy.snapshots[-1]
    found = copy.snapshot(spec.split("@", 1)[-1])
    if found is not None:
        return found
    match = _TIME.fullmatch(spec.strip())
    if match is None:
        raise UsageError(
            f"Invalid --snapshot {quoted(spec)}: {copy.name} has no snapshot of that name, "
            "and it is not a time such as '2020-02-18 17:00' (the restore points: "
            f"{', '.join(s.name for s in copy.snapshots[-3:])}, ...)"
        )
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        moment = datetime(year, month, day, hour, minute, second).timestamp()
    except ValueError as exc:
        raise UsageError(f"Invalid --snapshot {quoted(spec)}: {exc}") from None
    if match.group(4) is None:  # (a day: up to its end, also on a day of 23 or 25 hours)
        moment = datetime(year, month, day, 23, 59, 59).timestamp()
    ours = [s for s in copy.snapshots if (job.naming.timestamp(s.name) or moment + 1) <= moment]
    if not ours:
        raise UsageError(
            f"Invalid --snapshot {quoted(spec)}: {copy.name} has no snapshot of this backup "
            f"at or before it (the oldest: {copy.snapshots[0].name})"
        )
    return ours[-1]


def desire_restore(
    job: Job,
    request: RestoreRequest,
    copies: HostState,
    here: Optional[HostState],
    received: Mapping[str, str],
    keys: Mapping[str, str] = {},
    local: Mapping[str, Mapping[str, Optional[str]]] = {},
) -> list[RestoreDesire]:
    """One desire per dataset to restore. `copies`: the target's tree under the copy;
    `here`: the source host's tree under the destination (None: it does not exist);
    `received`: copy name -> the selection value it received; read when a copy is
    encrypted, `keys`: copy name -> its keylocation (the encryption roots), `local`:
    copy name -> the properties set on it locally -> the value received under it."""
    root = copy_root(job, request)
    copy = copies.get(root)
    if copy is None:
        raise no_copy(request, root)
    chosen = choose_snapshot(job, copy, request.snapshot)
    trees = [copy]
    if request.recursive:
        trees += sorted(
            (ds for ds in copies if ds.name != root and under(ds.name, root)),
            key=lambda ds: ds.name,
        )
    result: list[RestoreDesire] = []
    refused: list[str] = []
    for each in trees:
        destination = request.destination + each.name[len(root) :]
        live = here.get(destination) if here is not None else None
        # (sent raw, the copy is an encryption root of its own, with a keylocation (a raw
        # receive sets one); encrypted on receiving (--encrypt), it inherits the target's)
        raw = each.encryption != "off" and (request.raw or each.name in keys)
        desire = _one(job, request, each, chosen.name, destination, live,
                      received.get(each.name), raw)  # fmt: skip
        if desire.raw:
            desire = _raw(desire, keys.get(each.name), local.get(each.name, {}))
        above = next((r for r in refused if under(destination, r)), None)
        if above is not None and desire.case is not Case.REFUSED:
            desire = attrs.evolve(desire, case=Case.REFUSED, why=f"{above} is not restored")
        if desire.case is Case.REFUSED:
            refused.append(destination)
        result.append(desire)
    return result


def _one(
    job: Job,
    request: RestoreRequest,
    copy: Dataset,
    name: str,
    destination: str,
    live: Optional[Dataset],
    selection: Optional[str],
    raw: bool,
) -> RestoreDesire:
    snap = copy.snapshot(name)
    position = copy.snapshots.index(snap) if snap is not None else len(copy.snapshots)
    newer = tuple(s.name for s in copy.snapshots[position + 1 :])
    desire = RestoreDesire(
        copy, destination, name, Case.REFUSED, "", newer=newer, raw=raw,
        decrypted=copy.encryption != "off" and not raw, selection=selection,
        beside=request.to is not None,
        held_already=snap is not None and restore_tag(job) in snap.holds,
    )  # fmt: skip
    if not copy.snapshots:
        return attrs.evolve(desire, why=f"{copy.name} has no snapshots (nothing of it was sent)")
    if snap is None:
        return attrs.evolve(desire, why=f"{copy.name} has no snapshot @{name} (made later)")
    if live is None:
        return attrs.evolve(desire, case=Case.FULL, why=f"{destination} does not exist")
    if raw and live.encryption == "off":
        return attrs.evolve(
            desire,
            why=(
                f"{destination} exists and is not encrypted: zfs receives no raw stream onto "
                "it; restore beside it with --to NEW"
                + (", or without --raw" if request.raw else "")
            ),
        )
    base = _common(copy.snapshots[: position + 1], live.snapshots)
    if base is None:
        return attrs.evolve(
            desire,
            why=(
                f"{destination} exists and has no snapshot of the backup's chain: nothing is "
                "destroyed on a guess; restore beside it with --to NEW"
            ),
        )
    at = [s.name for s in live.snapshots].index(base.name)
    later = live.snapshots[at + 1 :]
    lost = tuple(s.name for s in later)
    case = Case.ROLLBACK if base.guid == snap.guid else Case.INCREMENTAL
    # (zfs rollback -r destroys the later bookmarks too; zfs recv -F only snapshots)
    marks = tuple(
        b.name for b in live.bookmarks if b.createtxg > base.createtxg and case is Case.ROLLBACK
    )
    ours = job.naming.hold_tag
    desire = attrs.evolve(
        desire, base=base.name, lost=lost, lost_written=live.written, lost_bookmarks=marks,
        release_first=tuple(s.name for s in later if ours in s.holds),
    )  # fmt: skip
    if base.guid == snap.guid and not lost and not marks and not live.written:
        return attrs.evolve(desire, case=Case.CURRENT, why=f"{destination} is at @{name} already")
    foreign = [(s.name, t) for s in later for t in s.holds if t != ours]
    if foreign:
        snapshot, tag = foreign[0]
        return attrs.evolve(
            desire,
            why=(
                f"{destination}@{snapshot} is held by {tag}: it would have to be destroyed; "
                "release it, or restore beside it with --to NEW"
            ),
        )
    loses = _losses(lost, marks, live.written)
    if not request.force:
        return attrs.evolve(
            desire,
            why=(
                f"{destination} exists: --force rolls it back to @{base.name} ({loses}), "
                "or restore beside it with --to NEW"
            ),
        )
    how = "rolled back to" if case is Case.ROLLBACK else "received onto (zfs recv -F)"
    return attrs.evolve(desire, case=case, why=f"--force: {how} @{base.name} ({loses})")


#: set locally on any raw copy, and not the target's doing: the key's place comes along,
#: a volume's size is "local" whatever its source
_OWN = frozenset({"keylocation", "volsize"})


def _raw(
    desire: RestoreDesire, keylocation: Optional[str], local: Mapping[str, Optional[str]]
) -> RestoreDesire:
    """A raw restore sends the copy's own properties (`zfs send -w -p`: zfs recv of a raw
    `zfs send -b` stream of an encryption root aborts, openzfs #17011): what the target
    set over a received value gets that value back (-o), the rest is left out (-x)."""
    props = sorted((p, v) for p, v in local.items() if p not in _OWN)
    return attrs.evolve(
        desire,
        keylocation=keylocation,
        leave_out=tuple(p for p, v in props if v is None),
        put_back=tuple(f"{p}={v}" for p, v in props if v is not None),
    )


def _common(chain: Sequence[Snapshot], live: Sequence[Snapshot]) -> Optional[Snapshot]:
    """The destination's newest snapshot that is in the copy's chain up to the chosen
    one (by guid)."""
    guids = {s.guid for s in chain}
    return next((s for s in reversed(live) if s.guid in guids), None)


def _losses(lost: Sequence[str], marks: Sequence[str], written: int) -> str:
    parts = []
    if lost:
        parts.append(f"destroys {len(lost)} newer snapshot(s): {', '.join('@' + s for s in lost)}")
    if marks:
        parts.append(f"{len(marks)} newer bookmark(s): {', '.join('#' + b for b in marks)}")
    parts.append(f"loses {written} bytes written since its newest snapshot")
    return "; ".join(parts)
