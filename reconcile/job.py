"""The job: everything a run was asked to do, as one frozen value of a few parts.

Built once from the command line (executors.options); nothing mutates it. Its parts are
the values the stages read: `naming` (the names and tags of this backup), `remote` (the
hosts and the target path), `selection` (which datasets, and which get a snapshot),
`snapshotting` (how snapshots are taken), `thinning` (what is kept), and `transfer` (what
is sent and how the chain is kept). Desire fans the job out: a pair's decisions
(reconcile.pair) read naming, thinning and transfer; the compile stage gets
`Job.transfer_recipe` (how each send and receive is made) and `snapshotting`, so a
command is made from what it needs and nothing else.
"""

from __future__ import annotations

from typing import Optional

import attrs

from reconcile.model import Host, Side
from reconcile.naming import Naming
from reconcile.never import assert_never
from reconcile.pipes import TransferOptions
from reconcile.schedule import Schedule

#: --retries and --retry-delay (seconds) unless given: three retries after 10, 20, 40 s
#: (a link that is down for more than a minute is down for this run)
DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAY = 10.0


@attrs.frozen
class TransferRecipe:
    """How every send and receive of a run is made (the compile stage's share)."""

    #: --zfs-compressed: `zfs send -c`
    zfs_compressed: bool = False
    #: --encrypt: the target encrypts (keys' properties are not received)
    encrypt: bool = False
    #: recv options: -x PROPERTY and -o PROPERTY=VALUE
    filter_properties: tuple[str, ...] = ()
    set_properties: tuple[str, ...] = ()
    #: compression, buffers, rate and user pipes of every send
    pipes: TransferOptions = attrs.Factory(TransferOptions)
    #: the stream crosses ssh (one side, or both, is remote)
    remote: bool = False
    #: --ignore-transfer-errors: a failed transfer whose snapshot arrived is fine
    ignore_transfer_errors: bool = False


@attrs.frozen
class Remote:
    """Where: the two hosts, and the target path the source's datasets map under."""

    source: Host = attrs.Factory(Host)
    target: Host = attrs.Factory(Host)
    #: None: snapshot-only mode (no target)
    target_path: Optional[str] = None
    #: --strip-path: leading components of a source name left out under target_path
    strip_path: int = 0

    def host(self, side: Side) -> Host:
        """The host of a side."""
        if side is Side.SOURCE:
            return self.source
        if side is Side.TARGET:
            return self.target
        return assert_never(side)

    @property
    def same_host(self) -> bool:
        return self.source == self.target

    @property
    def crosses_ssh(self) -> bool:
        """A stream between them crosses ssh (one side, or both, is remote)."""
        return not (self.source.is_local and self.target.is_local)

    @property
    def exclude_paths(self) -> tuple[str, ...]:
        """When source and target are one host, the target path is never a source."""
        if self.target_path and self.same_host:
            return (self.target_path,)
        return ()


@attrs.frozen
class SelectionRules:
    """Which datasets take part, and which of them get a new snapshot."""

    #: take new snapshots (False: --no-snapshot, --read-only-source)
    snapshot: bool = True
    #: --min-change: bytes written since our newest snapshot for a new one (0: always)
    min_change: int = 1
    exclude_received: bool = False
    #: --include-received: never turn --exclude-received on by itself (Job)
    include_received: bool = False
    #: --exclude-unchanged: bytes written for a dataset to take part (0: every one)
    exclude_unchanged: int = 0


@attrs.frozen
class Snapshotting:
    """How the snapshots of a run are taken (the compile stage's share)."""

    #: zfs snapshot -o PROPERTY=VALUE
    properties: tuple[str, ...] = ()
    #: commands (argv) run on the source before / after taking the snapshots
    pre_cmds: tuple[tuple[str, ...], ...] = ()
    post_cmds: tuple[tuple[str, ...], ...] = ()


@attrs.frozen
class Thinning:
    """What is kept: the schedules of both sides, and the deadlines of what is gone."""

    #: None: --no-thinning
    keep_source: Optional[Schedule] = None
    keep_target: Optional[Schedule] = None
    #: --destroy-missing: seconds after our last snapshot (None: never destroy datasets)
    destroy_missing: Optional[float] = None
    #: --destroy-orphan-bookmarks: seconds; our bookmarks of other tags whose snapshot is
    #: older go (None: they are only listed)
    destroy_orphan_bookmarks: Optional[float] = None


@attrs.frozen
class Transfer:
    """What is sent, how each target's chain is kept, and what may give way to a receive."""

    send: bool = True
    #: --other-snapshots: send snapshots that are not ours too
    other_snapshots: bool = False
    #: regular expressions: source snapshots whose full name matches one are never sent
    exclude_snapshot_patterns: tuple[str, ...] = ()
    guid_check: bool = True
    holds: bool = True
    #: keep each target's chain with a bookmark on the source (the command line's
    #: default; False: zfs-autobackup 3.3's behaviour, --no-bookmarks)
    bookmarks: bool = False
    #: a new clone's first send is from its origin (the command line's default; False:
    #: sent in full as zfs-autobackup 3.3, --no-clone)
    clones: bool = False
    #: --read-only-source: nothing on the source is changed (no snapshot, hold, bookmark
    #: or destroy there; only listings and sends)
    read_only_source: bool = False
    rollback: bool = False
    destroy_incompatible: bool = False
    force: bool = False
    decrypt: bool = False
    encrypt: bool = False
    zfs_compressed: bool = False
    ignore_transfer_errors: bool = False
    #: recv options: -x PROPERTY and -o PROPERTY=VALUE
    filter_properties: tuple[str, ...] = ()
    set_properties: tuple[str, ...] = ()
    #: compression, buffers, rate and user pipes of every send
    pipes: TransferOptions = attrs.Factory(TransferOptions)
    #: --retries: a transfer whose link broke (ssh) is repeated up to this many times
    #: in the same run, from its resume token where there is one (0: never)
    retries: int = DEFAULT_RETRIES
    #: --retry-delay: seconds before the first retry; each next one waits twice as long
    retry_delay: float = DEFAULT_RETRY_DELAY


@attrs.frozen
class Job:
    naming: Naming
    remote: Remote = attrs.Factory(Remote)
    selection: SelectionRules = attrs.Factory(SelectionRules)
    snapshotting: Snapshotting = attrs.Factory(Snapshotting)
    thinning: Thinning = attrs.Factory(Thinning)
    transfer: Transfer = attrs.Factory(Transfer)

    @property
    def transfer_recipe(self) -> TransferRecipe:
        t = self.transfer
        return TransferRecipe(
            zfs_compressed=t.zfs_compressed,
            encrypt=t.encrypt,
            filter_properties=t.filter_properties,
            set_properties=t.set_properties,
            pipes=t.pipes,
            remote=self.remote.crosses_ssh,
            ignore_transfer_errors=t.ignore_transfer_errors,
        )

    @property
    def reads_bookmarks(self) -> bool:
        """Source bookmarks are listed: an existing one is a base for the next send also
        with --no-bookmarks, which makes and destroys none (as zfs-autobackup 4.0rc2).
        Not for a read-only source, whose guard allows no send from a bookmark."""
        return self.transfer.bookmarks or (
            self.remote.target_path is not None and not self.transfer.read_only_source
        )

    @property
    def auto_exclude_received(self) -> bool:
        """As zfs-autobackup 3.3: a run without a target on one host (snapshot-only mode)
        leaves received selection values alone unless --include-received, so a host that
        also holds a partner's backups does not snapshot and thin those."""
        return (
            self.remote.target_path is None
            and self.remote.same_host
            and not self.selection.exclude_received
            and not self.selection.include_received
        )

    @property
    def excludes_received(self) -> bool:
        return self.selection.exclude_received or self.auto_exclude_received
