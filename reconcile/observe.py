"""Observe: read a host's state with a constant number of read-only zfs commands.

However many datasets and snapshots exist, observing a host costs:
  source: 1 `zfs get` (the selection property, every filesystem and volume)
          1 `zfs list -r` over the roots of the datasets the property may select
          (excluded paths and, with --exclude-received, received values are not listed)
          0-1 `zfs holds` (only snapshots whose userrefs > 0; split only past ~100 KB of names)
  target: 1 `zfs list -r TARGET-PATH`, 0-1 `zfs holds`
Commands go through an injected reader (the executors' runner), never directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import attrs

from reconcile import selection_values, zfs_text
from reconcile.errors import DatasetNotFound, UsageError
from reconcile.listing import Read, Reader, holds, read_listing
from reconcile.listing_cache import Cache
from reconcile.model import Dataset, Host, HostState, ResumeInfo, Side
from reconcile.selection import select
from reconcile.zfs_names import under


def pool_features(reader: Reader, state: HostState, pools: Sequence[str], label: str) -> HostState:
    """`state` with the features of `pools` (one `zpool get`; none where the listing
    read them already, with the pools' guids)."""
    if not pools:
        return state
    known = {pool: state.features_read[pool] for pool in pools if pool in state.features_read}
    missing = sorted(set(pools) - set(known))
    if missing:
        features = zfs_text.FEATURE_PROPERTIES
        argv = ["zpool", "get", "-H", "-o", "name,property,value", features, *missing]
        out = reader.run(state.host, argv, label=label).stdout
        known.update(zfs_text.parse_pool_features(out))
    return attrs.evolve(state, features=known)


def _minimal_roots(names: Sequence[str]) -> list[str]:
    """Names that have no ancestor in `names` (listing those with -r covers the rest)."""
    roots: list[str] = []
    for name in sorted(names):
        if not roots or not under(name, roots[-1]):
            roots.append(name)
    return roots


def observe_source(
    reader: Reader,
    host: Host,
    property_name: str,
    label: str = Side.SOURCE.label,
    *,
    exclude_paths: Sequence[str] = (),
    exclude_received: bool = False,
    bookmarks: bool = False,
    cache: Optional[Cache] = None,
) -> HostState:
    """Every filesystem/volume's selection value, and the trees the property may select
    (with their bookmarks when `bookmarks`: in the same listing).

    Datasets the selection rules exclude whatever their snapshots (an excluded path such
    as the target path on the same host, or a received value with `exclude_received`) are
    not listed: on a host that also holds the backups that halves what is read.
    """
    out = reader.run(
        host,
        [
            "zfs",
            "get",
            "-H",
            "-p",
            "-o",
            "name,value,source",
            "-t",
            "filesystem,volume",
            property_name,
        ],
        label=label,
    ).stdout
    values = {
        name: sel
        for name, sel in zfs_text.parse_selection(out).items()
        if sel.value not in selection_values.UNSET  # no value: not part of this backup
    }
    candidates = select(
        values,
        property_name=property_name,
        exclude_received=exclude_received,
        exclude_paths=exclude_paths,
    )
    roots = _minimal_roots([c.dataset for c in candidates if c.selected])
    datasets: dict[str, Dataset] = {}
    read = Read(zfs_text.Listing([], [], []), frozenset(), None)
    if roots:
        read = read_listing(reader, host, roots, label, bookmarks=bookmarks, cache=cache)
        found = read.listing
        datasets = zfs_text.assemble(
            found.datasets, found.snapshots, values, bookmarks=found.bookmarks
        )
    datasets = dict(sorted(holds(reader, host, label, datasets).items()))
    return read.state(host, datasets, values)


def observe_target(
    reader: Reader,
    host: Host,
    target_path: str,
    label: str = Side.TARGET.label,
    *,
    cache: Optional[Cache] = None,
) -> HostState:
    """Everything under the target path. A missing target path is a usage error."""
    state = observe_tree(reader, host, target_path, label, cache=cache)
    if state is None:
        raise UsageError(
            f"Target path '{target_path}' does not exist. Please create this dataset first."
        )
    return state


def observe_tree(
    reader: Reader,
    host: Host,
    root: str,
    label: str,
    *,
    bookmarks: bool = False,
    cache: Optional[Cache] = None,
) -> Optional[HostState]:
    """Every dataset and snapshot (with its holds; and bookmarks) under `root`; None: no
    such dataset."""
    try:
        read = read_listing(reader, host, [root], label, bookmarks=bookmarks, cache=cache)
    except DatasetNotFound:
        return None
    found = read.listing
    listed = zfs_text.assemble(found.datasets, found.snapshots, bookmarks=found.bookmarks)
    return read.state(host, holds(reader, host, label, listed))


def exists(reader: Reader, host: Host, name: str, label: str) -> bool:
    """Whether a dataset exists (`zfs list -H -o name NAME`: one line, not its tree)."""
    try:
        reader.run(host, ["zfs", "list", "-H", "-o", "name", name], label=label)
    except DatasetNotFound:
        return False
    return True


def received_values(reader: Reader, host: Host, root: str, prop: str, label: str) -> dict[str, str]:
    """The value of `prop` each dataset under `root` received (none: left out)."""
    argv = ["zfs", "get", "-H", "-p", "-o", "name,received", "-t", "filesystem,volume", "-r",
            prop, root]  # fmt: skip
    return zfs_text.parse_received(reader.run(host, argv, label=label).stdout)


def local_values(
    reader: Reader, host: Host, root: str, label: str
) -> dict[str, dict[str, Optional[str]]]:
    """The properties set locally on each dataset under `root`, with the value each
    received under the local one (None: none)."""
    argv = ["zfs", "get", "-H", "-p", "-o", "name,property,received", "-s", "local",
            "-t", "filesystem,volume", "-r", "all", root]  # fmt: skip
    return zfs_text.parse_local(reader.run(host, argv, label=label).stdout)


def key_locations(reader: Reader, host: Host, root: str, label: str) -> dict[str, str]:
    """The keylocation of each encryption root under `root` (the datasets that have
    one set: a raw receive sets it)."""
    argv = ["zfs", "get", "-H", "-p", "-o", "name,value", "-s", "local",
            "-t", "filesystem,volume", "-r", "keylocation", root]  # fmt: skip
    return zfs_text.parse_received(reader.run(host, argv, label=label).stdout)


def snapshot_sizes(
    reader: Reader, host: Host, root: str, recursive: bool, label: str
) -> Optional[list[tuple[str, int, int]]]:
    """(full name, creation, referenced) of the snapshots of `root` (`recursive`: and of
    its children), oldest first; None: no such dataset."""
    argv = ["zfs", "list", "-H", "-p", "-o", "name,creation,referenced", "-t", "snapshot",
            "-s", "createtxg", *(["-r"] if recursive else ["-d", "1"]), root]  # fmt: skip
    try:
        return zfs_text.parse_snapshot_sizes(reader.run(host, argv, label=label).stdout)
    except DatasetNotFound:
        return None


def resume_info(
    reader: Reader, host: Host, target: HostState, label: str = Side.SOURCE.label
) -> dict[str, ResumeInfo]:
    """What each resume token on the target is about: one `zfs send -nvt` per token,
    on the source (so zero commands when nothing was interrupted)."""
    result: dict[str, ResumeInfo] = {}
    for ds in target:
        if ds.resume_token:
            out = reader.run(
                host, ["zfs", "send", "-nv", "-t", ds.resume_token], label=label, check=False
            )
            toname, toguid = zfs_text.parse_resume_info(out.stdout + "\n" + out.stderr)
            if toname:
                result[ds.name] = ResumeInfo(toname, toguid)
    return result
