"""The job: everything a run was asked to do, as one frozen value.

Built once from the command line (executors.cli); nothing mutates it. Desire and the
planner read it; the compile stage gets only its slices (`Job.transfer_recipe`: how
each send and receive is made; `Job.snapshotting`: how snapshots are taken), so a
command is made from what it needs and nothing else.
"""

from __future__ import annotations

from typing import Optional

import attrs

from reconcile.model import Host
from reconcile.naming import Naming
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
class Snapshotting:
    """How the snapshots of a run are taken (the compile stage's share)."""

    #: zfs snapshot -o PROPERTY=VALUE
    properties: tuple[str, ...] = ()
    #: commands (argv) run on the source before / after taking the snapshots
    pre_cmds: tuple[tuple[str, ...], ...] = ()
    post_cmds: tuple[tuple[str, ...], ...] = ()


@attrs.frozen
class Job:
    naming: Naming
    source: Host = attrs.Factory(Host)
    target: Host = attrs.Factory(Host)
    #: None: snapshot-only mode (no target)
    target_path: Optional[str] = None
    #: None: --no-thinning
    keep_source: Optional[Schedule] = None
    keep_target: Optional[Schedule] = None
    strip_path: int = 0
    min_change: int = 1
    snapshot: bool = True
    send: bool = True
    holds: bool = True
    #: --read-only-source: nothing on the source is changed (no snapshot, hold, bookmark
    #: or destroy there; only listings and sends)
    read_only_source: bool = False
    other_snapshots: bool = False
    exclude_received: bool = False
    #: --include-received: never turn --exclude-received on by itself (see below)
    include_received: bool = False
    exclude_unchanged: int = 0
    rollback: bool = False
    destroy_incompatible: bool = False
    force: bool = False
    guid_check: bool = True
    #: recv options: -x PROPERTY and -o PROPERTY=VALUE
    filter_properties: tuple[str, ...] = ()
    set_properties: tuple[str, ...] = ()
    #: zfs snapshot -o PROPERTY=VALUE for new snapshots
    snapshot_properties: tuple[str, ...] = ()
    #: commands (argv) run on the source before / after taking the snapshots
    pre_snapshot_cmds: tuple[tuple[str, ...], ...] = ()
    post_snapshot_cmds: tuple[tuple[str, ...], ...] = ()
    #: --destroy-missing: seconds after our last snapshot (None: never destroy datasets)
    destroy_missing: Optional[float] = None
    #: regular expressions: source snapshots whose full name matches one are never sent
    exclude_snapshot_patterns: tuple[str, ...] = ()
    zfs_compressed: bool = False
    ignore_transfer_errors: bool = False
    decrypt: bool = False
    encrypt: bool = False
    #: compression, buffers, rate and user pipes of every send
    transfer: TransferOptions = attrs.Factory(TransferOptions)
    #: keep each target's chain with a bookmark on the source (the command line's
    #: default; False: zfs-autobackup 3.3's behaviour, --no-bookmarks)
    bookmarks: bool = False
    #: a new clone's first send is from its origin (the command line's default; False:
    #: sent in full as zfs-autobackup 3.3, --no-clone)
    clones: bool = False
    #: --destroy-orphan-bookmarks: seconds; our bookmarks of other tags whose snapshot is
    #: older go (None: they are only listed)
    destroy_orphan_bookmarks: Optional[float] = None
    #: --retries: a transfer whose link broke (ssh) is repeated up to this many times
    #: in the same run, from its resume token where there is one (0: never)
    retries: int = DEFAULT_RETRIES
    #: --retry-delay: seconds before the first retry; each next one waits twice as long
    retry_delay: float = DEFAULT_RETRY_DELAY

    @property
    def transfer_recipe(self) -> TransferRecipe:
        return TransferRecipe(
            zfs_compressed=self.zfs_compressed,
            encrypt=self.encrypt,
            filter_properties=self.filter_properties,
            set_properties=self.set_properties,
            pipes=self.transfer,
            remote=not (self.source.is_local and self.target.is_local),
            ignore_transfer_errors=self.ignore_transfer_errors,
        )

    @property
    def snapshotting(self) -> Snapshotting:
        return Snapshotting(
            self.snapshot_properties, self.pre_snapshot_cmds, self.post_snapshot_cmds
        )

    @property
    def reads_bookmarks(self) -> bool:
        """Source bookmarks are listed: an existing one is a base for the next send also
        with --no-bookmarks, which makes and destroys none (as zfs-autobackup 4.0rc2).
        Not for a read-only source, whose guard allows no send from a bookmark."""
        return self.bookmarks or (self.target_path is not None and not self.read_only_source)

    @property
    def same_host(self) -> bool:
        return self.source == self.target

    @property
    def auto_exclude_received(self) -> bool:
        """As zfs-autobackup 3.3: a run without a target on one host (snapshot-only mode)
        leaves received selection values alone unless --include-received, so a host that
        also holds a partner's backups does not snapshot and thin those."""
        return (
            self.target_path is None
            and self.same_host
            and not self.exclude_received
            and not self.include_received
        )

    @property
    def excludes_received(self) -> bool:
        return self.exclude_received or self.auto_exclude_received

    @property
    def exclude_paths(self) -> tuple[str, ...]:
        """When source and target are one host, the target path is never a source."""
        if self.target_path and self.same_host:
            return (self.target_path,)
        return ()
