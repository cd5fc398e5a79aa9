"""The data model: hosts, datasets and snapshots as observed, as frozen attrs values.

Everything here is plain data. Observation fills it from zfs output; desire and the
planner read it. Nothing in this module runs a command or reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Optional

import attrs

if TYPE_CHECKING:
    from reconcile.listing_cache import Entry

FILESYSTEM = "filesystem"
VOLUME = "volume"


class Side(str, Enum):
    """Which host of a backup: the source or the target (its value is the word)."""

    SOURCE = "source"
    TARGET = "target"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def heading(self) -> str:
        """The side's name as a heading: Source, Target."""
        return self.value.capitalize()

    @property
    def label(self) -> str:
        """The classic log's prefix: [Source], [Target]."""
        return f"[{self.heading}]"


@attrs.frozen
class Host:
    """Where commands run: this machine (`ssh` is None) or `ssh` = user@host / ssh alias."""

    ssh: Optional[str] = None
    ssh_config: Optional[str] = None

    @property
    def is_local(self) -> bool:
        return self.ssh is None

    def describe(self) -> str:
        return "local" if self.ssh is None else self.ssh


@attrs.frozen
class Selection:
    """The value of the selection property on a dataset and where it comes from.

    `source` is zfs' own word: "local", "received", "default", "-" (none), or
    "inherited from POOL/DS" (then `inherited_from` names the dataset).
    """

    value: str
    source: str


@attrs.frozen
class Snapshot:
    dataset: str
    name: str
    guid: int
    createtxg: int
    creation: int
    userrefs: int = 0
    written: int = 0
    #: hold tags; only observed for snapshots with userrefs > 0
    holds: tuple[str, ...] = ()
    #: datasets cloned from this snapshot (zfs `clones`): it cannot be destroyed
    clones: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.dataset}@{self.name}"


@attrs.frozen
class Bookmark:
    """A bookmark (`DATASET#NAME`): what an incremental send needs of a snapshot (its
    guid and createtxg), without the snapshot's data."""

    dataset: str
    name: str
    guid: int
    createtxg: int
    creation: int

    @property
    def full_name(self) -> str:
        return f"{self.dataset}#{self.name}"


@attrs.frozen
class Dataset:
    name: str
    type: str
    guid: int
    #: bytes written since the newest snapshot (zfs `written`)
    written: int = 0
    resume_token: Optional[str] = None
    #: the snapshot this dataset is a clone of
    origin: Optional[str] = None
    encryption: str = "off"
    selection: Optional[Selection] = None
    #: oldest first (createtxg order)
    snapshots: tuple[Snapshot, ...] = ()
    #: oldest first (createtxg order); only observed where bookmarks are used (the source)
    bookmarks: tuple[Bookmark, ...] = ()

    @property
    def pool(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def parent(self) -> Optional[str]:
        return self.name.rsplit("/", 1)[0] if "/" in self.name else None

    def snapshot(self, name: str) -> Optional[Snapshot]:
        for snap in self.snapshots:
            if snap.name == name:
                return snap
        return None


@attrs.frozen
class ResumeInfo:
    """What a receive_resume_token is about (from `zfs send -nvt TOKEN`)."""

    toname: str
    toguid: Optional[int] = None

    @property
    def snapshot(self) -> str:
        return self.toname.partition("@")[2]


@attrs.frozen
class HostState:
    """What one observation of one host saw."""

    host: Host
    datasets: Mapping[str, Dataset] = attrs.field(factory=dict)
    #: (source) every dataset's selection value, also of datasets not read because the
    #: selection rules exclude them anyway; empty: the values of `datasets` say it all
    selection: Mapping[str, Selection] = attrs.field(factory=dict)
    #: the command lines observation ran, for the command budget
    commands: tuple[str, ...] = ()
    #: pool -> its features that are enabled or active (`zpool get`)
    features: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    #: the datasets whose snapshots the listing cache served (reconcile.listing_cache)
    served: frozenset[str] = frozenset()
    #: what the listing cache should hold of this host now (None: no cache was used)
    entries: Optional[tuple[Entry, ...]] = None
    #: the guids of the pools read (with the listing cache)
    pool_guids: Mapping[str, int] = attrs.field(factory=dict)
    #: the features the listing cache's `zpool get` read with the guids: not yet in
    #: `features` (which hold only the pools a run sends from or bookmarks in, cache or
    #: not), but no `zpool get` more when they are needed
    features_read: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    def pool_features(self, dataset: str) -> frozenset[str]:
        return self.features.get(dataset.split("/", 1)[0], frozenset())

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets.values())

    def get(self, name: str) -> Optional[Dataset]:
        return self.datasets.get(name)

    def children(self, name: str) -> list[Dataset]:
        """Direct child filesystems and volumes of `name`."""
        prefix = name + "/"
        return [
            ds
            for ds in self.datasets.values()
            if ds.name.startswith(prefix) and "/" not in ds.name[len(prefix) :]
        ]

    def descendants(self, name: str) -> list[Dataset]:
        prefix = name + "/"
        return [ds for ds in self.datasets.values() if ds.name.startswith(prefix)]
