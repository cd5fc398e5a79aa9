"""Where the listing cache lives between runs: one file per backup job, on the machine
that runs the tool (reconcile.listing_cache has the rules).

The file is `$XDG_CACHE_HOME/zfs-autobackup/` (else `~/.cache/zfs-autobackup/`), named
like the job's lock: per backup name, source, target and target path, so two jobs never
write one file (and one job's runs are one at a time: the lock). It is written whole, to
a temporary file renamed over the old one, readable by its owner only. A file that cannot
be read, or is not exactly what this tool writes, is a warning and a full listing: the
cache only ever saves reading, it never decides anything.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable

import attrs

from executors.lock import job_digest
from executors.runner import Runner
from reconcile.errors import ReconcileError
from reconcile.job import Job
from reconcile.listing import read_entries
from reconcile.listing_cache import Cache, CorruptCache, Entry, dumps, host_key, loads
from reconcile.model import Host, HostState


@attrs.frozen
class Changed:
    """The datasets a run changes on one host, and what it takes to read them again."""

    host: Host
    label: str
    names: set[str]
    pools: Mapping[str, int]


#: a file larger than this is not one this tool wrote (about 100 bytes per snapshot)
MAX_BYTES = 1 << 30


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "zfs-autobackup"


def cache_path(job: Job) -> Path:
    return cache_folder() / f"listing-{job_digest(job)}.json"


@attrs.define
class Store:
    """The listing cache of one run: loaded once, saved after the plan is made."""

    path: Path
    #: a warning (the file could not be used)
    warn: Callable[[str], None]
    #: --debug's lines (which datasets were served)
    debug: Callable[[str], None]
    #: as loaded: what this run's observation may serve
    cache: Cache = attrs.field(factory=Cache)
    #: per host, what the cache should hold after this run (the hosts it read)
    fresh: dict[str, dict[tuple[str, int, int], Entry]] = attrs.field(factory=dict)
    #: per host, what this run changes there: read again once it has run
    changed: dict[str, Changed] = attrs.field(factory=dict)

    @classmethod
    def load(cls, path: Path, warn: Callable[[str], None], debug: Callable[[str], None]) -> Store:
        store = cls(path, warn, debug)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise CorruptCache(f"larger than {MAX_BYTES} bytes")
            store.cache = loads(data.decode("utf-8"))
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError, CorruptCache) as exc:
            warn(f"The listing cache {path} can't be used ({exc}): reading every snapshot")
        return store

    def seen(self, label: str, state: HostState) -> None:
        """Say what the cache served of a host, and keep what it should hold now."""
        if state.entries is None:
            return
        if state.served:
            names = ", ".join(sorted(state.served))
            self.debug(f"{label} Served from the listing cache ({len(state.served)}): {names}")
        self.fresh.setdefault(host_key(state.host), {}).update((e.key, e) for e in state.entries)

    def forget(self, state: HostState, names: Iterable[str], label: str) -> None:
        """Drop the entries of datasets this run changes (saved so: if the run stops
        half way, the next run reads them); `reread` reads them once it has run."""
        gone = set(names)
        key = host_key(state.host)
        kept = self.fresh.get(key, {})
        for k in [k for k, e in kept.items() if e.name in gone]:
            del kept[k]
        if gone:  # (both sides on one host: one listing after the run)
            was = self.changed.get(key, Changed(state.host, label, set(), {}))
            pools = {**was.pools, **state.pool_guids}
            self.changed[key] = Changed(state.host, was.label, was.names | gone, pools)

    def reread(self, runner: Runner) -> None:
        """After the run: read what it changed (one listing per host, for both sides
        when they share it), and save."""
        for key, what in self.changed.items():
            try:
                entries = read_entries(runner, what.host, what.names, what.pools, what.label)
            except ReconcileError as exc:  # (a saving only: the next run reads them)
                self.debug(f"{what.label} Not read again for the listing cache: {exc}")
                continue
            self.fresh.setdefault(key, {}).update((e.key, e) for e in entries)
        self.changed.clear()
        self.save()

    def updated(self) -> Cache:
        """The cache to save: each host this run read holds what the run saw of it."""
        cache = self.cache
        for host, entries in self.fresh.items():
            cache = cache.replaced(host, entries.values())
        return cache

    def save(self) -> None:
        """Write the cache (a failure is a warning: the next run reads everything)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".listing-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(dumps(self.updated()))
                Path(tmp).replace(self.path)
            except BaseException:
                Path(tmp).unlink()
                raise
        except OSError as exc:
            self.warn(f"The listing cache {self.path} can't be written ({exc})")
