"""The listing cache: each dataset's snapshots as last read, served again while ZFS's
`snapshots_changed` says they have not changed since (#36). Pure values and rules; the
file is executors.listing_store's, the commands reconcile.observe's.

The rules (docs/concepts.md, "The listing cache"):
- an entry is keyed by the host, the pool's guid and the dataset's guid, and it is of
  one name and one origin: a dataset destroyed and made again (a new guid), renamed,
  promoted (its origin changes) or on a pool made again is read afresh;
- it is served only while the dataset's `snapshots_changed` is the value it had when
  the entry was read, and only when that value is strictly older than the moment of the
  read minus the property's resolution (one second). The moment is the host's own clock,
  in whole seconds, read before the listing (so no later than the read): a change in the
  same second as the read, after it, is never missed, and no other machine's clock is
  ever compared. (A second more than the rounding needs: ZFS stamps with the kernel's
  coarse clock, a tick behind the one `date` reads.)
- a dataset whose `snapshots_changed` is unknown (`-`: a pool without the property, or
  snapshots made before it existed) is always read.
What a cached entry cannot say (a hold or a clone made since: neither changes
`snapshots_changed`) never decides a destroy: executors.session reads such datasets
again before a plan that destroys in them is kept. A dataset whose snapshots have clones,
or that is the origin of a listed dataset, is read every time (reconcile.observe); the
holds of the snapshots an entry says are held are read every time, as without a cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Optional

import attrs

from reconcile.model import Host, Snapshot

#: the resolution of `snapshots_changed` (whole seconds, as `zfs get -p` prints it)
RESOLUTION = 1
#: the cache file's format; another one is read as no cache
FORMAT = 1


def host_key(host: Host) -> str:
    """The host as the cache names it: how it is reached (ssh alias, ssh config)."""
    return host.describe() if host.ssh_config is None else f"{host.ssh}|{host.ssh_config}"


@attrs.frozen
class Entry:
    """One dataset's snapshots as read at `read_at` (the host's clock, before the read)."""

    host: str
    pool_guid: int
    guid: int
    name: str
    origin: Optional[str]
    #: `snapshots_changed` when the snapshots were read
    changed: int
    #: the host's clock before the read, in whole seconds (no later than the read)
    read_at: int
    snapshots: tuple[Snapshot, ...]

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.host, self.pool_guid, self.guid)

    @property
    def cloned(self) -> bool:
        """Whether a snapshot had clones (which come and go without changing
        `snapshots_changed`: such a dataset is read every time)."""
        return any(s.clones for s in self.snapshots)

    def serves(self, name: str, origin: Optional[str], changed: Optional[int]) -> bool:
        """Whether this entry still says what the dataset's snapshots are, now that
        `zfs list` shows it with this name, origin and `snapshots_changed`."""
        return (
            changed is not None
            and changed == self.changed
            and self.changed < self.read_at - RESOLUTION
            and name == self.name
            and origin == self.origin
        )


@attrs.frozen
class Cache:
    entries: Mapping[tuple[str, int, int], Entry] = attrs.field(factory=dict)

    def of_host(self, host: str) -> bool:
        return any(key[0] == host for key in self.entries)

    def get(self, host: str, pool_guid: int, guid: int) -> Optional[Entry]:
        return self.entries.get((host, pool_guid, guid))

    def replaced(self, host: str, entries: Iterable[Entry]) -> Cache:
        """This cache with the host's entries replaced by `entries` (what one listing of
        it saw; a dataset no longer there is forgotten)."""
        kept = {k: e for k, e in self.entries.items() if k[0] != host}
        kept.update((e.key, e) for e in entries)
        return Cache(kept)


class CorruptCache(ValueError):
    """The cache file is not one this tool wrote (the message says what is wrong)."""


_SNAP_FIELDS = ("name", "guid", "createtxg", "creation", "userrefs", "written", "clones")


def dumps(cache: Cache) -> str:
    entries = [
        {
            "host": e.host,
            "pool_guid": e.pool_guid,
            "guid": e.guid,
            "name": e.name,
            "origin": e.origin,
            "changed": e.changed,
            "read_at": e.read_at,
            "snapshots": [
                [s.name, s.guid, s.createtxg, s.creation, s.userrefs, s.written, list(s.clones)]
                for s in e.snapshots
            ],
        }
        for e in sorted(cache.entries.values(), key=lambda e: (e.host, e.name))
    ]
    return json.dumps({"format": FORMAT, "entries": entries}, separators=(",", ":"))


def _need(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CorruptCache(f"{what} is not a {kind.__name__}: {value!r:.60}")
    return value


def _snapshot(dataset: str, row: Any) -> Snapshot:
    _need(row, list, "a snapshot")
    if len(row) != len(_SNAP_FIELDS):
        raise CorruptCache(f"a snapshot of {dataset!r} has {len(row)} fields, not 7")
    name, guid, txg, creation, userrefs, written, clones = row
    for value, what in ((guid, "guid"), (txg, "createtxg"), (creation, "creation"),
                        (userrefs, "userrefs"), (written, "written")):  # fmt: skip
        _need(value, int, f"a snapshot's {what}")
    _need(name, str, "a snapshot's name")
    if not name or "@" in name or "/" in name:
        raise CorruptCache(f"{name!r} is not a snapshot name")
    for clone in _need(clones, list, "a snapshot's clones"):
        _need(clone, str, "a clone's name")
    return Snapshot(dataset, name, guid, txg, creation, userrefs, written, clones=tuple(clones))


def _entry(item: Any) -> Entry:
    _need(item, dict, "an entry")
    try:
        name = _need(item["name"], str, "a dataset's name")
        origin = item["origin"]
        if origin is not None:
            _need(origin, str, "an origin")
        snaps = tuple(_snapshot(name, row) for row in _need(item["snapshots"], list, "snapshots"))
        txgs = [s.createtxg for s in snaps]
        if txgs != sorted(txgs):
            raise CorruptCache(f"the snapshots of {name!r} are not in createtxg order")
        return Entry(
            host=_need(item["host"], str, "a host"),
            pool_guid=_need(item["pool_guid"], int, "a pool guid"),
            guid=_need(item["guid"], int, "a dataset guid"),
            name=name,
            origin=origin,
            changed=_need(item["changed"], int, "snapshots_changed"),
            read_at=_need(item["read_at"], int, "a read time"),
            snapshots=snaps,
        )
    except KeyError as exc:
        raise CorruptCache(f"an entry has no {exc}") from None


def loads(text: str) -> Cache:
    """The cache in `text`; CorruptCache if it is not exactly what `dumps` writes."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptCache(f"not JSON ({exc})") from None
    _need(data, dict, "the file")
    if data.get("format") != FORMAT:
        raise CorruptCache(f"format {data.get('format')!r:.20}, not {FORMAT}")
    entries = [_entry(item) for item in _need(data.get("entries"), list, "the entries")]
    by_key = {e.key: e for e in entries}
    if len(by_key) != len(entries):
        raise CorruptCache("two entries of one dataset")
    return Cache(by_key)
