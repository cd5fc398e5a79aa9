"""Read a host's datasets and snapshots: one `zfs list` of their trees, or with the
listing cache (reconcile.listing_cache), the datasets with `snapshots_changed` and the
snapshots of only those whose value the cache can't vouch for. And the holds of held
snapshots. Commands go through an injected reader (the executors' runner).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Optional, Protocol

import attrs

from reconcile import zfs_text
from reconcile.errors import DatasetNotFound, ObservationError, ReconcileError, ZfsError
from reconcile.limits import chunked
from reconcile.listing_cache import Cache, Entry, host_key
from reconcile.model import Dataset, Host, HostState, Selection, Snapshot
from reconcile.zfs_names import under


class Output(Protocol):
    @property
    def stdout(self) -> str: ...

    @property
    def stderr(self) -> str: ...


class Reader(Protocol):
    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Output: ...

    def host_clock(self, host: Host) -> Optional[int]:
        """The host's own clock (whole seconds since the epoch; None: unknown)."""
        ...


def list_argv(
    roots: Sequence[str],
    bookmarks: bool = False,
    *,
    changed: bool = False,
    snapshots: bool = True,
    depth: bool = False,
) -> list[str]:
    """`zfs list` of the trees of `roots` (`depth`: of `roots` and their own snapshots,
    with their direct children's rows, which the caller leaves)."""
    types = "filesystem,volume" + (",snapshot" if snapshots else "")
    types += ",bookmark" if bookmarks else ""
    props = ",".join(zfs_text.LIST_PROPERTIES + (zfs_text.CHANGED,) * changed)
    return ["zfs", "list", "-H", "-p", "-o", props, "-t", types,
            *(["-d", "1"] if depth else ["-r"]), *roots]  # fmt: skip


def snapshots_argv(names: Sequence[str]) -> list[str]:
    """The snapshots of `names` (not of their children)."""
    props = ",".join(zfs_text.LIST_PROPERTIES)
    return ["zfs", "list", "-H", "-p", "-o", props, "-t", "snapshot", "-d", "1", *names]


def check_names(host: Host, roots: Sequence[str], names: Sequence[str]) -> None:
    """Refuse listing output with a name that is neither a root nor under one."""
    for name in names:
        if not any(under(name, root) for root in roots):
            asked = ", ".join(roots)
            raise ObservationError(
                f"zfs list -r {asked} on {host.describe()} returned '{name}', which is not "
                f"{asked} or under it: stopping before anything is changed"
            )


def holds(reader: Reader, host: Host, label: str, state: dict[str, Dataset]) -> dict[str, Dataset]:
    held = [s.full_name for ds in state.values() for s in ds.snapshots if s.userrefs > 0]
    if not held:
        return state
    tags: dict[str, tuple[str, ...]] = {}
    for chunk in chunked(held):
        out = reader.run(host, ["zfs", "holds", "-H", *chunk], label=label).stdout
        tags.update(zfs_text.parse_holds(out))
    result = {}
    for name, ds in state.items():
        if any(s.userrefs > 0 for s in ds.snapshots):
            snaps = tuple(
                attrs.evolve(s, holds=tags.get(s.full_name, ())) if s.userrefs else s
                for s in ds.snapshots
            )
            ds = attrs.evolve(ds, snapshots=snaps)  # noqa: PLW2901
        result[name] = ds
    return result


@attrs.frozen
class Read:
    """One host's listing, and what the listing cache did for it."""

    listing: zfs_text.Listing
    #: the datasets whose snapshots the cache served
    served: frozenset[str]
    #: what the cache should hold of this host now (None: leave it as it is)
    entries: Optional[tuple[Entry, ...]]
    #: the guids of the pools read (with a cache)
    pools: Mapping[str, int] = attrs.field(factory=dict)
    #: their features, read with their guids (with a cache)
    features: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    def state(
        self,
        host: Host,
        datasets: dict[str, Dataset],
        selection: Optional[Mapping[str, Selection]] = None,
    ) -> HostState:
        """The host as read: `datasets` (assembled from this listing, with holds)."""
        return HostState(
            host=host,
            datasets=datasets,
            selection=selection or {},
            served=self.served,
            entries=self.entries,
            pool_guids=self.pools,
            features_read=self.features,
        )


def read_listing(
    reader: Reader,
    host: Host,
    roots: Sequence[str],
    label: str,
    *,
    bookmarks: bool = False,
    cache: Optional[Cache] = None,
) -> Read:
    """The trees of `roots`: their datasets (and bookmarks), and their snapshots, read or,
    with a `cache`, served from it where it is trusted (reconcile.listing_cache).

    Without a cache: one `zfs list`. With one: the host's clock, then `zfs list` with
    `snapshots_changed` (and the snapshots too when the cache knows nothing of this host:
    still one listing), `zpool get guid` of the pools, and the snapshots of the datasets
    the cache does not serve, in as few `zfs list -d 1` as the command line allows."""
    if cache is None:
        found = zfs_text.parse_list(
            reader.run(host, list_argv(roots, bookmarks), label=label).stdout
        )
        check_names(host, roots, found.names)
        return Read(found, frozenset(), None)
    clock = reader.host_clock(host)
    known = cache.of_host(host_key(host))
    try:
        argv = list_argv(roots, bookmarks, changed=True, snapshots=not known)
        out = reader.run(host, argv, label=label).stdout
    except ZfsError as exc:
        if isinstance(exc, DatasetNotFound) or not zfs_text.unknown_property(
            str(exc), zfs_text.CHANGED
        ):
            raise
        # (OpenZFS before 2.2 has no snapshots_changed: everything is read, as without)
        return read_listing(reader, host, roots, label, bookmarks=bookmarks)
    found = zfs_text.parse_list(out, changed=True)
    check_names(host, roots, found.names)
    pools, features = read_pools(
        reader, host, sorted({d.name.split("/")[0] for d in found.datasets}), label
    )
    served, entries, unread = [], [], []
    # (a clone made or destroyed changes no snapshots_changed of its origin's dataset:
    # one whose snapshots have clones, or are a listed dataset's origin, is read)
    origins = {d.origin.partition("@")[0] for d in found.datasets if d.origin}
    for listed in found.datasets:
        entry = cache.get(host_key(host), pools.get(listed.pool, 0), listed.guid)
        if (
            known
            and entry
            and entry.serves(listed.name, listed.origin, listed.changed)
            and not entry.cloned
            and listed.name not in origins
        ):
            served.append(entry)
        elif known:
            unread.append(listed.name)
    snapshots = list(found.snapshots)
    for chunk in chunked(unread):
        more = zfs_text.parse_list(reader.run(host, snapshots_argv(chunk), label=label).stdout)
        check_names(host, chunk, more.names)
        snapshots += more.snapshots
    snapshots += [s for entry in served for s in entry.snapshots]
    entries = list(served)
    if clock is not None:
        by_dataset: dict[str, list[Snapshot]] = {}
        for snap in snapshots:
            by_dataset.setdefault(snap.dataset, []).append(snap)
        cached = {e.name for e in served}
        for listed in found.datasets:
            if listed.changed is None or listed.name in cached or listed.pool not in pools:
                continue
            snaps = tuple(sorted(by_dataset.get(listed.name, ()), key=lambda s: s.createtxg))
            entries.append(
                Entry(host_key(host), pools[listed.pool], listed.guid, listed.name,
                      listed.origin, listed.changed, clock, snaps)
            )  # fmt: skip
    listing = attrs.evolve(found, snapshots=snapshots)
    return Read(listing, frozenset(e.name for e in served), tuple(entries), pools, features)


def read_entries(
    reader: Reader, host: Host, names: Iterable[str], pools: Mapping[str, int], label: str
) -> tuple[Entry, ...]:
    """The listing cache's entries of `names`, read now (after a run changed them): the
    host's clock, then each dataset's row with `snapshots_changed` and its snapshots, in
    one `zfs list -d 1` per command line's worth. A dataset that is gone is left out."""
    clock = reader.host_clock(host)
    wanted = sorted(n for n in set(names) if n.split("/")[0] in pools)
    if clock is None or not wanted:
        return ()
    entries = []
    for chunk in chunked(wanted):
        argv = list_argv(chunk, changed=True, depth=True)
        try:
            found = zfs_text.parse_list(reader.run(host, argv, label=label).stdout, changed=True)
        except DatasetNotFound:
            continue  # (one of them is gone: the next run reads these)
        check_names(host, chunk, found.names)
        snaps: dict[str, list[Snapshot]] = {}
        for snap in found.snapshots:
            snaps.setdefault(snap.dataset, []).append(snap)
        for listed in found.datasets:
            if listed.name in chunk and listed.changed is not None:
                mine = tuple(sorted(snaps.get(listed.name, ()), key=lambda s: s.createtxg))
                entries.append(
                    Entry(host_key(host), pools[listed.pool], listed.guid, listed.name,
                          listed.origin, listed.changed, clock, mine)
                )  # fmt: skip
    return tuple(entries)


def read_pools(
    reader: Reader, host: Host, pools: Sequence[str], label: str
) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
    """Each pool's guid, and its features, in one `zpool get` (none asked: none read).
    A pool whose guid can't be read is left out: the listing cache then neither serves
    nor keeps its datasets (it is only ever a saving, never a reason to stop); features
    not read are read later, where a send needs them (as without the cache)."""
    if not pools:
        return {}, {}
    wanted = f"guid,{zfs_text.FEATURE_PROPERTIES}"
    argv = ["zpool", "get", "-H", "-o", "name,property,value", wanted, *pools]
    try:
        guids, features = zfs_text.parse_pools(reader.run(host, argv, label=label).stdout)
    except ReconcileError:
        return {}, {}
    return guids, {pool: found for pool, found in features.items() if pool in guids}


def reread_snapshots(
    reader: Reader, state: HostState, names: Iterable[str], label: str
) -> HostState:
    """`state` with the snapshots (and their holds) of `names` read afresh: what the
    listing cache served of them is no longer served."""
    wanted = sorted(set(names) & set(state.datasets))
    snaps: dict[str, list[Snapshot]] = {name: [] for name in wanted}
    for chunk in chunked(wanted):
        found = zfs_text.parse_list(
            reader.run(state.host, snapshots_argv(chunk), label=label).stdout
        )
        check_names(state.host, chunk, found.names)
        for snap in found.snapshots:
            snaps[snap.dataset].append(snap)
    fresh = {
        name: attrs.evolve(
            state.datasets[name], snapshots=tuple(sorted(snaps[name], key=lambda s: s.createtxg))
        )
        for name in wanted
    }
    fresh = holds(reader, state.host, label, fresh)
    datasets = {name: fresh.get(name, ds) for name, ds in state.datasets.items()}
    return attrs.evolve(state, datasets=datasets, served=state.served - set(wanted))
