"""Typed plan actions. Plain frozen values: what to do, on which side, and why.

`side` is "source" or "target". `unit` names the dataset whose failure this action
counts as (the source dataset of a pair, or a missing target dataset): the executor
isolates failures per unit, and the exit code counts failed units.
"""

from __future__ import annotations

from typing import Optional, Union, get_args

import attrs

from reconcile.model import Side

SOURCE, TARGET = Side.SOURCE, Side.TARGET


@attrs.frozen
class CreateSnapshots:
    """One atomic `zfs snapshot` of several datasets of one pool."""

    pool: str
    snapshot: str
    datasets: tuple[str, ...]
    #: 1-based part number when the list had to be split for the OS argument limit
    part: int = 1
    parts: int = 1
    side: Side = SOURCE
    kind: str = "snapshot"

    @property
    def unit(self) -> str:
        return f"pool {self.pool}"

    @property
    def reason(self) -> str:
        why = f"{len(self.datasets)} changed dataset(s) in pool {self.pool}"
        if self.parts > 1:
            why += f" (part {self.part} of {self.parts}: too many for one command)"
        return why


@attrs.frozen
class CreateParent:
    """`zfs create -o canmount=off` for a target parent that does not exist yet (as
    zfs-autobackup 3.3: a parent made only to hold backups mounts nothing)."""

    dataset: str
    unit: str
    reason: str = "parent of a received dataset"
    side: Side = TARGET
    kind: str = "create-parent"


@attrs.frozen
class Mount:
    """Mount a filesystem after its first (full) receive, as zfs-autobackup 3.3 does:
    receives are always `zfs recv -u`; then, on the target host, the filesystem is
    mounted only if its canmount is on, its mountpoint is neither legacy nor none, its
    key is loaded, and nothing is in the way (the mountpoint is absent or an empty
    directory: a backup is never mounted over other files). Never fails the dataset."""

    dataset: str
    unit: str
    reason: str = "received for the first time"
    side: Side = TARGET
    kind: str = "mount"


@attrs.frozen
class AbortResume:
    dataset: str
    unit: str
    reason: str
    side: Side = TARGET
    kind: str = "abort-resume"


@attrs.frozen
class Rollback:
    dataset: str
    snapshot: str
    unit: str
    reason: str
    side: Side = TARGET
    kind: str = "rollback"
    #: `zfs rollback -r`: the snapshots after it are destroyed (a forced restore)
    destroy_newer: bool = False


@attrs.frozen
class Destroy:
    """Destroy snapshots of one dataset (one `zfs destroy ds@a,b,c`).

    Thinning never blocks sending: unless `required`, a destroy that fails is retried
    one snapshot at a time, the ones zfs still refuses are reported, and the dataset
    goes on. `required` destroys (incompatible target snapshots, a missing dataset's
    snapshots before the dataset itself) must succeed for what comes after them."""

    side: Side
    dataset: str
    snapshots: tuple[str, ...]
    reasons: tuple[str, ...]
    unit: str
    required: bool = False
    kind: str = "destroy"

    @property
    def reason(self) -> str:
        return "; ".join(f"{s}: {r}" for s, r in zip(self.snapshots, self.reasons))


@attrs.frozen
class DestroyDataset:
    """Destroy a target dataset that is missing on the source (--destroy-missing only).

    Never recursive: its snapshots are destroyed first, and it has no children."""

    dataset: str
    unit: str
    reason: str
    side: Side = TARGET
    kind: str = "destroy-dataset"


@attrs.frozen
class Send:
    """Replicate one snapshot: full (no base), incremental from `base`, or resumed."""

    source_dataset: str
    target_dataset: str
    snapshot: str
    base: Optional[str]
    unit: str
    reason: str
    #: guid of the snapshot when it already exists (None: made by this run)
    guid: Optional[int] = None
    resume_token: Optional[str] = None
    #: snapshots between `base` and `snapshot` that come along in one `zfs send -I`
    #: stream (every one of them is wanted on the target); empty: a plain -i step
    intermediates: tuple[str, ...] = ()
    #: send raw (-w): the source is encrypted and --decrypt was not given
    raw: bool = False
    #: the source is encrypted and sent decrypted (--decrypt): zfs cannot send its
    #: properties then (no -p); an unencrypted source is sent with -p even with
    #: --decrypt, as 3.3 does (under an encrypted target path the properties keep it
    #: unencrypted, where a receive without them would encrypt it)
    decrypted: bool = False
    #: receive with -F (--force)
    force: bool = False
    volume: bool = False
    #: `base` is a bookmark of the source dataset (`zfs send -i DS#BASE`)
    from_bookmark: bool = False
    #: `base` is the origin snapshot of this clone (`zfs send -i ORIGIN_DS@SNAP`): the
    #: target dataset is received as a clone of it
    from_origin: bool = False
    side: Side = TARGET
    kind: str = "send"

    @property
    def dataset(self) -> str:
        return self.target_dataset

    @property
    def mode(self) -> str:
        if self.resume_token:
            return "resume"
        return "incremental" if self.base else "full"

    @property
    def snapshots(self) -> tuple[str, ...]:
        """Every snapshot this send creates on the target, oldest first."""
        return (*self.intermediates, self.snapshot)


@attrs.frozen
class Hold:
    side: Side
    dataset: str
    snapshot: str
    tag: str
    unit: str
    reason: str = "newest common snapshot"
    kind: str = "hold"


@attrs.frozen
class Release:  # never blocks: a hold that stays is reported, and the dataset goes on
    side: Side
    dataset: str
    snapshot: str
    tag: str
    unit: str
    reason: str = "no longer the newest common snapshot"
    kind: str = "release"
    #: released whatever failed before it (a restore's own hold: never left behind)
    always: bool = False


@attrs.frozen
class Bookmark:
    """`zfs bookmark DS@SNAP DS#NAME` on the source: the chain to this target survives
    the snapshot's destruction. With `copy_of`, `zfs bookmark DS#COPY_OF DS#NAME`: a
    copy of someone else's bookmark of that snapshot (the source has it no more)."""

    dataset: str
    snapshot: str
    bookmark: str
    unit: str
    reason: str
    side: Side = SOURCE
    kind: str = "bookmark"
    copy_of: Optional[str] = None


@attrs.frozen
class DestroyBookmark:
    """`zfs destroy DS#NAME` of one of our bookmarks (one per command: zfs destroys one
    bookmark at a time). Never blocks: a bookmark that stays is reported."""

    dataset: str
    bookmark: str
    unit: str
    reason: str
    side: Side = SOURCE
    kind: str = "destroy-bookmark"


@attrs.frozen
class Restore:
    """A send back from the target: `zfs send -b` of the copy's snapshot on the target
    host (the property values the copy received, not the target's overrides; raw: -w -p,
    the overrides left out or put back on receiving), received into `dataset` on the
    source host: in full, or from `base`, a snapshot both have."""

    copy: str
    snapshot: str
    dataset: str
    unit: str
    reason: str
    base: Optional[str] = None
    #: the copy is encrypted and restores raw (`zfs send -w -p`)
    raw: bool = False
    #: the copy is encrypted and restores decrypted: zfs sends no properties (no -b)
    decrypted: bool = False
    volume: bool = False
    #: raw: properties the target set on the copy, left out (`zfs recv -x P`) or put
    #: back as received (`zfs recv -o P=V`)
    leave_out: tuple[str, ...] = ()
    put_back: tuple[str, ...] = ()
    side: Side = SOURCE
    kind: str = "restore"


@attrs.frozen
class SetProperty:
    """`zfs set PROPERTY=VALUE DS` (a restored dataset's selection property, set here
    again as it was: received, it would look like a replica)."""

    dataset: str
    property: str
    value: str
    unit: str
    reason: str
    side: Side = SOURCE
    kind: str = "set"


Action = Union[
    CreateSnapshots,
    CreateParent,
    Mount,
    AbortResume,
    Rollback,
    Destroy,
    DestroyDataset,
    Send,
    Hold,
    Release,
    Bookmark,
    DestroyBookmark,
    Restore,
    SetProperty,
]
#: the action types, read from the union (one list to extend)
ACTION_TYPES: tuple[type, ...] = get_args(Action)
#: the `kind` tag of each action type (the discriminator in plan files)
KINDS: dict[str, type] = {attrs.fields(t).kind.default: t for t in ACTION_TYPES}
