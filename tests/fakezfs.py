"""A fast, in-memory fake of the `zfs` and `zpool` commands the tool runs, as a Runner.

For unit, property and scale tests only: every behaviour it stands in for is also tested
on real OpenZFS in the guest. It models what the tool's safety depends on, with real
zfs' refusals and error texts:

- datasets with snapshots (guid, createtxg, creation, holds), `written`, the data they
  hold (a number standing for the content), user properties (local, received, inherited);
- `zfs send [-i|-I @base] ds@snap | zfs recv -u -s [-F] target`: full and incremental
  streams with or without intermediates, `-p` carries local user properties (they
  arrive as "received"). As real ZFS, an increment is received onto its base wherever
  the base is in the target's chain, as long as nothing changed since the base (the
  snapshots after it have nothing written, and neither has the dataset): they stay, the
  new ones come after them; a raw (-w) increment needs its base to be the newest
  snapshot. Otherwise it is refused without -F, and -F rolls back to the base (and says
  so in `events`);
- clones (`zfs clone`, `origin` and `clones` in listings): a snapshot with clones is
  not destroyed ("snapshot has dependent clones"), and in a batch that means none is;
- interrupted transfers (`interrupt_next`): the target keeps a resume token, `zfs send
  -t TOKEN` resumes, `zfs send -nv -t TOKEN` describes it, `zfs recv -A` aborts it;
- bookmarks (`zfs bookmark`, `-t ...,bookmark` listings, `zfs destroy DS#NAME` one at
  a time, `zfs send -i DS#NAME` but never -I from one, "bookmark feature not enabled"
  where `disabled_features` says so); a destroyed snapshot's bookmarks stay;
- holds, releases, snapshot lists destroyed all or nothing (a held one: "dataset is
  busy"), rollback that refuses to skip newer snapshots.

`events` records every change (("rollback", ds), ("destroy", ds@snap), ("recv-F", ds) ...)
so tests can check what happened, not only the end state.
"""

from __future__ import annotations

import itertools
import shlex
import threading
from collections.abc import Callable, Sequence
from typing import Optional

import attrs

from executors.runner import (
    PipelineResult,
    PipelineWatch,
    Result,
    Stage,
    pipeline_error,
    shell_line,
)
from reconcile import zfs_text
from reconcile.model import Host
from reconcile.scripts import MOUNT_SCRIPT


class FakeError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@attrs.define
class FSnap:
    name: str
    guid: int
    txg: int
    creation: int
    written: int
    data: int
    holds: list[str] = attrs.Factory(list)


@attrs.define
class FBookmark:
    name: str
    guid: int
    txg: int
    creation: int


@attrs.define
class FDataset:
    name: str
    type: str
    guid: int
    data: int = 0
    written: int = 0
    snaps: list[FSnap] = attrs.Factory(list)
    local_props: dict[str, str] = attrs.Factory(dict)
    received_props: dict[str, str] = attrs.Factory(dict)
    token: Optional[str] = None
    #: "dataset@snap" this dataset is a clone of
    origin: Optional[str] = None
    bookmarks: list[FBookmark] = attrs.Factory(list)
    #: `snapshots_changed`: when a snapshot was last made, destroyed or received here
    #: (None: never, "-"); as real ZFS, a hold, a bookmark or a clone leaves it
    changed: Optional[int] = None

    def snap(self, name: str) -> Optional[FSnap]:
        return next((s for s in self.snaps if s.name == name), None)

    def bookmark(self, name: str) -> Optional[FBookmark]:
        return next((b for b in self.bookmarks if b.name == name), None)


@attrs.frozen
class Stream:
    source: str
    #: snapshots in the stream, oldest first
    snaps: tuple[FSnap, ...]
    base_guid: Optional[int]
    props: tuple[tuple[str, str], ...] = ()
    raw: bool = False
    #: a clone's first stream (`zfs send -i ORIGIN_DS@SNAP CLONE@FIRST`): received as a
    #: clone of the target snapshot with `base_guid`
    clone: bool = False


@attrs.frozen
class Output:
    """What a fake command printed, and the stream it produced (`zfs send`)."""

    stdout: str = ""
    stderr: str = ""
    stream: Optional[Stream] = None


@attrs.frozen
class Partial:
    """What an interrupted receive left behind: the token's meaning."""

    source: str
    stream: Stream


class FakeZfs:
    """One host's pools."""

    def __init__(self, tokens: Optional[dict[str, Partial]] = None) -> None:
        """`tokens`: another host's resume tokens (what makes them meaningful to `zfs
        send -t` here: real tokens carry their meaning in them)."""
        self.datasets: dict[str, FDataset] = {}
        self.now = 0
        self._txg = itertools.count(100)
        self._guid = itertools.count(1_000_001)
        self._data = itertools.count(1)
        self._tokens: dict[str, Partial] = {} if tokens is None else tokens
        #: this host's resume tokens (pass them to the host that sends to this one)
        self.tokens = self._tokens
        self.events: list[tuple[str, str]] = []
        #: the next N receives are interrupted (a resume token stays behind)
        self.interrupt_next = 0
        #: pool -> features `zpool get` reports disabled ("feature@extensible_dataset")
        self.disabled_features: dict[str, set[str]] = {}

    # --- set-up and outside interference -------------------------------------------

    def create(self, name: str, kind: str = "filesystem", **props: str) -> FDataset:
        if name in self.datasets:
            raise FakeError(f"cannot create '{name}': dataset already exists")
        parent = name.rpartition("/")[0]
        if parent and parent not in self.datasets:
            raise FakeError(f"cannot create '{name}': parent does not exist")
        ds = FDataset(name, kind, next(self._guid), data=next(self._data))
        ds.local_props.update(props)
        self.datasets[name] = ds
        self.events.append(("create", name))
        return ds

    def write(self, name: str, size: int = 4096) -> None:
        ds = self.datasets[name]
        ds.data = next(self._data)
        ds.written += size

    def snapshot(self, names: Sequence[str]) -> None:
        """Atomically, as `zfs snapshot a@x b@x`."""
        pairs = []
        for full in names:
            dsname, _, short = full.partition("@")
            ds = self.datasets.get(dsname)
            if ds is None:
                raise FakeError(f"cannot open '{dsname}': dataset does not exist")
            if ds.snap(short):
                raise FakeError(f"cannot create snapshot '{full}': dataset already exists")
            pairs.append((ds, short))
        txg = next(self._txg)
        for ds, short in pairs:
            ds.snaps.append(FSnap(short, next(self._guid), txg, self.now, ds.written, ds.data))
            ds.written = 0
            ds.changed = self.now
            self.events.append(("snapshot", f"{ds.name}@{short}"))

    def get_snap(self, full: str) -> tuple[FDataset, FSnap]:
        dsname, _, short = full.partition("@")
        ds = self.datasets.get(dsname)
        snap = ds.snap(short) if ds else None
        if ds is None or snap is None:
            raise FakeError(f"cannot open '{full}': dataset does not exist")
        return ds, snap

    def has_children(self, name: str) -> bool:
        return any(n.startswith(name + "/") for n in self.datasets)

    def clones_of(self, full: str) -> list[str]:
        return sorted(n for n, ds in self.datasets.items() if ds.origin == full)

    def clone(self, snapshot: str, name: str) -> FDataset:
        """`zfs clone SNAPSHOT NAME`: a new dataset that starts as that snapshot."""
        _, snap = self.get_snap(snapshot)
        ds = self.create(name)
        ds.data, ds.origin = snap.data, snapshot
        return ds

    # --- property reading ------------------------------------------------------------

    def prop(self, name: str, prop: str) -> tuple[str, str]:
        ds = self.datasets[name]
        if prop in ds.local_props:
            return ds.local_props[prop], "local"
        if prop in ds.received_props:
            return ds.received_props[prop], "received"
        parent = name.rpartition("/")[0]
        while parent:
            up = self.datasets[parent]
            value = up.local_props.get(prop, up.received_props.get(prop))
            if value is not None:
                return value, f"inherited from {parent}"
            parent = parent.rpartition("/")[0]
        return "-", "-"

    # --- commands --------------------------------------------------------------------

    def command(self, argv: Sequence[str], stream: Optional[Stream] = None) -> Output:
        """Run one command (`stream`: what `zfs recv` reads). Raises FakeError."""
        if argv[0] == "zpool":  # zpool get -H -o name,[property,]value PROPS [POOL...]
            columns, props, asked = argv[4].split(","), argv[5].split(","), argv[6:]
            pools = (
                [p for p in asked if p in self.datasets]
                if asked
                else sorted({n.split("/")[0] for n in self.datasets})
            )
            rows = []
            for p in pools:
                for prop in props:
                    if prop == "guid":
                        value = str(self.datasets[p].guid + 7)
                    else:
                        off = prop in self.disabled_features.get(p, ())
                        value = "disabled" if off else "active"
                    row = {"name": p, "property": prop, "value": value}
                    rows.append("\t".join(row[c] for c in columns))
            return Output("".join(row + "\n" for row in rows))
        if list(argv[:3]) == ["sh", "-c", MOUNT_SCRIPT]:
            name = argv[4]
            ds = self.datasets[name]
            canmount = self.prop(name, "canmount")[0]
            if ds.type == "filesystem" and canmount in ("on", "-"):
                self.events.append(("mount", name))
            return Output()
        if argv[0] != "zfs":
            raise FakeError(f"sh: 1: {argv[0]}: not found", 127)
        verb, args = argv[1], list(argv[2:])
        handler = getattr(self, f"_zfs_{verb}", None)
        if handler is None:
            raise FakeError(f"fake zfs: unsupported command {shlex.join(argv)}", 2)
        if verb == "recv":
            return handler(args, stream)  # type: ignore[no-any-return]
        return handler(args)  # type: ignore[no-any-return]

    def _zfs_set(self, args: list[str]) -> Output:
        """`zfs set P=V DS`: one property of one dataset (what the tool sends)."""
        (assignment, name) = args
        prop, _, value = assignment.partition("=")
        if name not in self.datasets:
            raise FakeError(f"cannot open '{name}': dataset does not exist")
        if ":" not in prop:
            raise FakeError(f"fake zfs: set of a native property {prop}", 2)
        self.datasets[name].local_props[prop] = value
        return Output()

    def _zfs_get(self, args: list[str]) -> Output:
        if args[args.index("-o") + 1] == "value":  # zfs get -H -p -o value PROP DATASET...
            prop, names = args[args.index("-o") + 2], args[args.index("-o") + 3 :]
            values = []
            for name in names:
                ds = self.datasets.get(name)
                if ds is None:
                    raise FakeError(f"cannot open '{name}': dataset does not exist")
                if prop == "receive_resume_token":
                    values.append(ds.token or "-")
                else:
                    values.append(self.prop(name, prop)[0])
            return Output("".join(v + "\n" for v in values))
        # zfs get -H -p -o COLUMNS [-s local] [-t TYPES] [-r] PROP|all [DATASET...]
        # (no dataset: all of them)
        columns = args[args.index("-o") + 1].split(",")
        rest = [a for i, a in enumerate(args) if not a.startswith("-")
                and args[i - 1] not in ("-o", "-t", "-s")]  # fmt: skip
        prop, roots = rest[0], rest[1:]
        for root in roots:
            if root not in self.datasets:
                raise FakeError(f"cannot open '{root}': dataset does not exist")
        lines = []
        for name in sorted(self.datasets):
            if roots and not any(
                name == r or ("-r" in args and name.startswith(r + "/")) for r in roots
            ):
                continue
            props = sorted(self.datasets[name].local_props) if prop == "all" else [prop]
            for each in props:
                value, source = self.prop(name, each)
                if "-s" in args and source not in args[args.index("-s") + 1].split(","):
                    continue
                received = self.datasets[name].received_props.get(each, "-")
                cells = {"name": name, "property": each, "value": value, "source": source,
                         "received": received}  # fmt: skip
                lines.append("\t".join(cells[c] for c in columns) + "\n")
        return Output("".join(lines))

    def _zfs_list(self, args: list[str]) -> Output:
        if "-d" in args:  # zfs list ... -t snapshot -d 1 DATASET...: their own snapshots
            return self._list_rows(args, args[args.index("-d") + 2 :], depth=True)
        roots = args[args.index("-r") + 1 :] if "-r" in args else args[-1:]
        if "-r" not in args:  # zfs list -H -o name DATASET[@SNAP]
            name = roots[0]
            if "@" in name:
                self.get_snap(name)
            elif name not in self.datasets:
                raise FakeError(f"cannot open '{name}': dataset does not exist")
            return Output(name + "\n")
        return self._list_rows(args, roots, depth=False)

    def _list_rows(self, args: list[str], roots: list[str], *, depth: bool) -> Output:
        """`zfs list -H -p -o LIST_PROPERTIES[,snapshots_changed] -t TYPES -r ROOTS` (or
        `-d 1 NAMES`: each one and its snapshots, not its children)."""
        for root in roots:
            if root not in self.datasets:
                raise FakeError(f"cannot open '{root}': dataset does not exist")
        types = args[args.index("-t") + 1].split(",") if "-t" in args else []
        changed = "snapshots_changed" in args[args.index("-o") + 1].split(",")
        rows: list[list[object]] = []
        for name in sorted(self.datasets):
            if not any(name == r or (not depth and name.startswith(r + "/")) for r in roots):
                continue
            ds = self.datasets[name]
            more: list[object] = [ds.changed if ds.changed is not None else "-"] * changed
            if not types or {"filesystem", "volume"} & set(types):
                rows.append(
                    [name, ds.type, ds.guid, 1, 0, "-", ds.written, ds.token or "-",
                     ds.origin or "-", "off", "-", *more]
                )  # fmt: skip
            if not types or "snapshot" in types:
                for s in ds.snaps:
                    clones = ",".join(self.clones_of(f"{name}@{s.name}")) or "-"
                    rows.append(
                        [f"{name}@{s.name}", "snapshot", s.guid, s.txg, s.creation,
                         len(s.holds), s.written, "-", "-", "off", clones, *["-"] * changed]
                    )  # fmt: skip
            if "bookmark" in types:
                for b in ds.bookmarks:
                    rows.append([f"{name}#{b.name}", "bookmark", b.guid, b.txg, b.creation,
                                 *["-"] * (6 + changed)])  # fmt: skip
        return Output("".join("\t".join(map(str, r)) + "\n" for r in rows))

    def _zfs_holds(self, args: list[str]) -> Output:
        lines = []
        for full in [a for a in args if not a.startswith("-")]:
            _, snap = self.get_snap(full)
            lines += [f"{full}\t{tag}\tThu Jan  1 00:00 1970\n" for tag in snap.holds]
        return Output("".join(lines))

    def _zfs_snapshot(self, args: list[str]) -> Output:
        names = [a for i, a in enumerate(args) if a != "-o" and (i == 0 or args[i - 1] != "-o")]
        self.snapshot(names)
        return Output()

    def _zfs_create(self, args: list[str]) -> Output:
        """`zfs create [-p] [-o P=V]... NAME` (without -p the parent must exist)."""
        name = args[-1]
        props = dict(
            a.split("=", 1) for i, a in enumerate(args[:-1]) if i > 0 and args[i - 1] == "-o"
        )
        parts = name.split("/")
        if "-p" not in args:
            self.create(name, **props)
            return Output()
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in self.datasets:
                self.create(sub, **(props if sub == name else {}))
        return Output()

    def _zfs_bookmark(self, args: list[str]) -> Output:
        """`zfs bookmark DS@SNAP DS#NAME` (or DS#OTHER: a copy of a bookmark)."""
        source, new = args[-2], args[-1]
        dsname, _, name = new.partition("#")
        if "bookmarks" in self.disabled_features.get(dsname.split("/")[0], ()):
            raise FakeError(f"cannot create bookmark '{new}': bookmark feature not enabled")
        if "#" in source:
            ds = self.datasets[source.partition("#")[0]]
            old = ds.bookmark(source.partition("#")[2])
            if old is None:
                raise FakeError(f"cannot create bookmark '{new}': bookmark does not exist", 2)
            guid, txg, creation = old.guid, old.txg, old.creation
        else:
            try:
                ds, snap = self.get_snap(source)
            except FakeError as exc:
                raise FakeError(f"cannot create bookmark '{new}': {exc}", 2) from None
            guid, txg, creation = snap.guid, snap.txg, snap.creation
        if ds.name != dsname:
            raise FakeError(
                f"cannot create bookmark '{new}': must be in same dataset as the snapshot"
            )
        if ds.bookmark(name) is not None:
            raise FakeError(f"cannot create bookmark '{new}': bookmark exists")
        ds.bookmarks.append(FBookmark(name, guid, txg, creation))
        ds.bookmarks.sort(key=lambda b: b.txg)
        self.events.append(("bookmark", new))
        return Output()

    def _zfs_clone(self, args: list[str]) -> Output:
        self.clone(args[-2], args[-1])
        return Output()

    def _zfs_hold(self, args: list[str], release: bool = False) -> Output:
        """As zfs: each argument on its own (one failing does not stop the others, the
        exit code says one failed); with -r, an argument stands for the snapshot and its
        descendants' snapshots of that name, held (released) all or none."""
        recursive = args[0] == "-r"
        tag, names = (args[1], args[2:]) if recursive else (args[0], args[1:])
        errors = []
        for arg in names:
            try:
                group = self._hold_group(arg, recursive)
                for full, snap in group:
                    if release and tag not in snap.holds:
                        raise FakeError(
                            f"cannot release hold from snapshot '{full}': no such tag on this dataset"
                        )
                    if not release and tag in snap.holds:
                        raise FakeError(
                            f"cannot hold snapshot '{full}': tag already exists on this dataset"
                        )
            except FakeError as exc:
                errors.append(str(exc))
                continue
            for full, snap in group:
                if release:
                    snap.holds.remove(tag)
                else:
                    snap.holds.append(tag)
                self.events.append(("release" if release else "hold", full))
        if errors:
            raise FakeError("\n".join(errors))
        return Output()

    def _hold_group(self, arg: str, recursive: bool) -> list[tuple[str, FSnap]]:
        if not recursive:
            return [(arg, self.get_snap(arg)[1])]
        root, _, short = arg.partition("@")
        group = [
            (f"{name}@{short}", snap)
            for name, ds in sorted(self.datasets.items())
            if (name == root or name.startswith(root + "/")) and (snap := ds.snap(short))
        ]
        if not group:
            raise FakeError(f"cannot open '{arg}': dataset does not exist")
        return group

    def _zfs_release(self, args: list[str]) -> Output:
        return self._zfs_hold(args, release=True)

    def _zfs_destroy(self, args: list[str]) -> Output:
        target = args[-1]
        if len([a for a in args if not a.startswith("-")]) > 1:
            raise FakeError("too many arguments", 2)
        if "#" in target:
            dsname, _, name = target.partition("#")
            ds = self.datasets.get(dsname)
            mark = ds.bookmark(name) if ds else None
            if ds is None or mark is None:
                raise FakeError(f"bookmark '{target}' does not exist.")
            ds.bookmarks.remove(mark)
            self.events.append(("destroy-bookmark", target))
            return Output()
        if "@" not in target:
            ds = self.datasets.get(target)
            if ds is None:
                raise FakeError(f"cannot open '{target}': dataset does not exist")
            if ds.snaps or self.has_children(target):
                raise FakeError(f"cannot destroy '{target}': filesystem has children")
            del self.datasets[target]
            self.events.append(("destroy-dataset", target))
            return Output()
        dsname, _, shorts = target.partition("@")
        ds = self.datasets.get(dsname)
        if ds is None:
            raise FakeError(f"cannot open '{dsname}': dataset does not exist")
        snaps = [s for s in ds.snaps if s.name in shorts.split(",")]
        if not snaps:
            raise FakeError("could not find any snapshots to destroy; check snapshot names.")
        for s in snaps:  # all or nothing, as one ioctl
            clones = self.clones_of(f"{dsname}@{s.name}")
            if clones:
                raise FakeError(
                    f"cannot destroy '{dsname}@{s.name}': snapshot has dependent clones\n"
                    "use '-R' to destroy the following datasets:\n" + "\n".join(clones)
                )
            if s.holds:
                raise FakeError(f"cannot destroy snapshot {dsname}@{s.name}: dataset is busy")
        for s in snaps:
            # what it had written now counts for what comes after it: the next snapshot,
            # or the dataset itself
            at = ds.snaps.index(s)
            if at == len(ds.snaps) - 1:
                ds.written += s.written
            else:
                ds.snaps[at + 1].written += s.written
            ds.snaps.remove(s)
            ds.changed = self.now
            self.events.append(("destroy", f"{dsname}@{s.name}"))
        if not ds.snaps:  # with no snapshot at all, everything counts as written
            ds.written = max(ds.written, 4096)
        return Output()

    def _zfs_rollback(self, args: list[str]) -> Output:
        ds, snap = self.get_snap(args[-1])
        if ds.snaps[-1] is not snap:
            raise FakeError(
                f"cannot rollback to '{args[-1]}': more recent snapshots or bookmarks exist\n"
                "use '-r' to force deletion of the following snapshots and bookmarks:"
            )
        ds.data, ds.written = snap.data, 0
        self.events.append(("rollback", ds.name))
        return Output()

    def _zfs_send(self, args: list[str]) -> Output:
        if "-t" in args:
            token = args[args.index("-t") + 1]
            partial = self._tokens.get(token)
            if partial is None:
                raise FakeError("cannot resume send: invalid resume token")
            last = partial.stream.snaps[-1]
            ds = self.datasets.get(partial.source)
            snap = ds.snap(last.name) if ds else None
            if snap is None or snap.guid != last.guid:
                raise FakeError(
                    f"cannot resume send: '{partial.source}@{last.name}' used in the "
                    "initial send no longer exists"
                )
            if any(a.startswith("-") and "n" in a for a in args):  # -n, -nv, -nvP
                # (as OpenZFS 2.3 prints it, on stdout: the token, then what it sends)
                name = f"{partial.source}@{last.name}"
                sends = "full send of" if partial.stream.base_guid is None else "send from"
                if sends == "send from":
                    base = next(
                        (x.name for x in ds.snaps if x.guid == partial.stream.base_guid), "?"
                    ) if ds else "?"  # fmt: skip
                    sends = f"send from {partial.source}@{base} to"
                text = (
                    "resume token contents:\nnvlist version: 0\n"
                    f"\ttoname = {name}\n\ttoguid = {hex(last.guid)}\n"
                    f"{sends} {name} estimated size is 1.00M\n"
                )
                return Output(text)
            return Output(stream=partial.stream)
        full = args[-1]
        ds, snap = self.get_snap(full)
        base_guid = None
        base = snap
        chosen = [snap]
        for flag in ("-i", "-I"):
            if flag in args:
                base_arg = args[args.index(flag) + 1]
                if "#" in base_arg:
                    if flag == "-I":
                        raise FakeError("Error: multiple snapshots cannot be sent from a bookmark.")
                    mark = ds.bookmark(base_arg.partition("#")[2])
                    if mark is None:
                        raise FakeError(f"cannot open '{base_arg}': bookmark does not exist")
                    if mark.txg >= snap.txg:
                        raise FakeError("cannot send: incremental source must be earlier")
                    carried = sum(x.written for x in ds.snaps if mark.txg < x.txg <= snap.txg)
                    props = tuple(sorted(ds.local_props.items())) if "-p" in args else ()
                    copy = attrs.evolve(snap, holds=[], written=carried)
                    return Output(
                        stream=Stream(ds.name, (copy,), mark.guid, props, raw="-w" in args)
                    )
                if not base_arg.startswith("@") and base_arg.partition("@")[0] != ds.name:
                    return self._clone_stream(args, ds, snap, flag, base_arg)
                base_name = base_arg.partition("@")[2]
                _, base = self.get_snap(f"{ds.name}@{base_name}")
                base_guid = base.guid
                if base.txg >= snap.txg:
                    raise FakeError("cannot send: incremental source must be earlier")
                if flag == "-I":
                    chosen = [s for s in ds.snaps if base.txg < s.txg <= snap.txg]
        props = tuple(sorted(ds.local_props.items())) if "-p" in args else ()
        # `written` as the target will see it: what changed since the snapshot before it
        # there (an -i step that skips snapshots carries all their changes; a full
        # stream's first snapshot holds everything)
        first = ds.snaps.index(chosen[0])
        since = ds.snaps.index(base) + 1 if base_guid is not None else 0
        carried = sum(x.written for x in ds.snaps[since : first + 1])
        if base_guid is None:
            carried = max(carried, 4096)
        copies = tuple(
            attrs.evolve(x, holds=[], written=carried if i == 0 else x.written)
            for i, x in enumerate(chosen)
        )
        return Output(stream=Stream(ds.name, copies, base_guid, props, raw="-w" in args))

    def _clone_stream(
        self, args: list[str], ds: FDataset, snap: FSnap, flag: str, base_arg: str
    ) -> Output:
        """`zfs send -i ORIGIN_DS@SNAP CLONE@FIRST`: from the clone's origin, or a snapshot
        before it in the origin's history."""
        if base_arg not in self._lineage(ds):
            raise FakeError(
                f"cannot send '{ds.name}@{snap.name}': incremental source must be in same "
                "filesystem"
            )
        if flag == "-I":
            raise FakeError("fake zfs: -I from a clone's origin is not modelled", 2)
        _, origin = self.get_snap(base_arg)
        first = ds.snaps.index(snap)
        carried = max(sum(x.written for x in ds.snaps[: first + 1]), 4096)
        props = tuple(sorted(ds.local_props.items())) if "-p" in args else ()
        copy = attrs.evolve(snap, holds=[], written=carried)
        return Output(
            stream=Stream(ds.name, (copy,), origin.guid, props, raw="-w" in args, clone=True)
        )

    def _lineage(self, ds: FDataset) -> list[str]:
        found: list[str] = []
        origin = ds.origin
        while origin and origin not in found:
            name, _, snap = origin.partition("@")
            ods = self.datasets[name]
            at = next(i for i, s in enumerate(ods.snaps) if s.name == snap)
            found += [f"{name}@{s.name}" for s in ods.snaps[: at + 1]]
            origin = ods.origin
        return found

    def _zfs_promote(self, args: list[str]) -> Output:
        """`zfs promote CLONE`: the origin's snapshots up to the clone's origin move to
        the clone, and the old origin dataset becomes its clone (guids stay)."""
        name = args[-1]
        ds = self.datasets.get(name)
        if ds is None:
            raise FakeError(f"cannot open '{name}': dataset does not exist")
        if ds.origin is None:
            raise FakeError(f"cannot promote '{name}': not a cloned filesystem")
        old_name, _, snap_name = ds.origin.partition("@")
        old = self.datasets[old_name]
        at = next(i for i, s in enumerate(old.snaps) if s.name == snap_name)
        moved, old.snaps = old.snaps[: at + 1], old.snaps[at + 1 :]
        clash = {s.name for s in moved} & {s.name for s in ds.snaps}
        if clash:
            raise FakeError(f"cannot promote '{name}': snapshot name conflicts: {sorted(clash)}")
        ds.snaps = [*moved, *ds.snaps]
        # (bookmarks up to the origin move with the snapshots, as zfs does)
        limit = moved[-1].txg
        marks = [b for b in old.bookmarks if b.txg <= limit]
        old.bookmarks = [b for b in old.bookmarks if b.txg > limit]
        ds.bookmarks = sorted([*marks, *ds.bookmarks], key=lambda b: b.txg)
        names = {s.name for s in moved}
        for other in self.datasets.values():
            where, _, snap = (other.origin or "").partition("@")
            if where == old_name and snap in names:
                other.origin = f"{name}@{snap}"
        ds.origin, old.origin = old.origin, f"{name}@{snap_name}"
        # (as OpenZFS 2.3 measured: the old origin's snapshots_changed changes, the
        # promoted clone's, which gained the snapshots, does not)
        old.changed = self.now
        self.events.append(("promote", name))
        return Output()

    def _clone_origin(self, name: str, guid: int) -> Optional[str]:
        """The snapshot of `guid` in `name`'s pool (what zfs recv makes a clone of)."""
        pool = name.split("/", maxsplit=1)[0]
        for dsname, ds in self.datasets.items():
            if dsname.split("/")[0] == pool:
                for snap in ds.snaps:
                    if snap.guid == guid:
                        return f"{dsname}@{snap.name}"
        return None

    def _zfs_recv(self, args: list[str], stream: Optional[Stream]) -> Output:
        name = args[-1]
        if args[0] == "-A":
            ds = self.datasets.get(name)
            if ds is None or ds.token is None:
                raise FakeError(f"'{name}' does not have any resumable receive state to abort")
            # an interrupted full receive: the dataset itself goes
            if not ds.snaps and self.has_children(name):
                raise FakeError(f"cannot destroy '{name}': filesystem has children")
            self._tokens.pop(ds.token, None)
            ds.token = None
            if not ds.snaps:
                del self.datasets[name]
            self.events.append(("abort", name))
            return Output()
        if stream is None:
            raise FakeError("cannot receive: failed to read from stream")
        force = "-F" in args
        clone_origin: Optional[str] = None
        ds = self.datasets.get(name)
        if ds is not None and ds.token is not None:
            partial = self._tokens[ds.token]
            if partial.stream != stream:
                raise FakeError(
                    f"cannot receive new filesystem stream: destination {name} contains "
                    'partially-complete state from "zfs receive -s".'
                )
        if stream.base_guid is None:
            if ds is not None and ds.token is None and (ds.snaps or not force):
                raise FakeError(
                    f"cannot receive new filesystem stream: destination '{name}' exists\n"
                    "must specify -F to overwrite it"
                )
            parent = name.rpartition("/")[0]
            if parent not in self.datasets:
                raise FakeError(
                    f"cannot receive new filesystem stream: parent of {name} does not exist"
                )
        elif stream.clone and ds is not None and ds.token is not None and not ds.snaps:
            pass  # (a resumed clone receive: the partial dataset is the clone already)
        elif ds is None and stream.clone:
            origin = self._clone_origin(name, stream.base_guid)
            if origin is None:
                raise FakeError(f"cannot receive: local origin for clone {name} does not exist")
            if name.rpartition("/")[0] not in self.datasets:
                raise FakeError(
                    f"cannot receive new filesystem stream: parent of {name} does not exist"
                )
            clone_origin = origin
        else:
            if ds is None:
                raise FakeError(
                    f"cannot receive incremental stream: destination '{name}' does not exist"
                )
            base = next((s for s in ds.snaps if s.guid == stream.base_guid), None)
            if base is None:
                raise FakeError(
                    f"cannot receive incremental stream: most recent snapshot of {name} does "
                    "not match incremental source"
                )
            newer = ds.snaps[ds.snaps.index(base) + 1 :]
            # as real ZFS: modified since the base means data written after it (in the
            # snapshots that follow it, or in the dataset); a raw increment also needs
            # its base to be the newest snapshot
            modified = bool(ds.written) or any(s.written for s in newer)
            if (modified or (stream.raw and newer)) and not force:
                raise FakeError(
                    f"cannot receive incremental stream: destination {name} has been "
                    "modified\nsince most recent snapshot"
                )
            if force and (newer or ds.written):
                if any(s.holds for s in newer):
                    raise FakeError(f"cannot receive: snapshot of {name} is held: dataset is busy")
                for s in newer:
                    ds.snaps.remove(s)
                    ds.changed = self.now
                    self.events.append(("destroy", f"{name}@{s.name}"))
                self.events.append(("recv-F", name))
        if self.interrupt_next > 0:
            self.interrupt_next -= 1
            if ds is None and "-s" in args:
                ds = self.create(name) if name.rpartition("/")[0] in self.datasets else None
                if ds is not None:
                    ds.origin = clone_origin
            if ds is not None and "-s" in args:
                token = f"1-fake-{next(self._guid)}"
                # as real ZFS: a stream of several snapshots (-I) cut in its first one
                # leaves a token that resumes that one only (the rest is not sent)
                self._tokens[token] = Partial(
                    stream.source, attrs.evolve(stream, snaps=stream.snaps[:1])
                )
                ds.token = token
            self.events.append(("interrupted", name))
            raise FakeError(
                "cannot receive incremental stream: checksum mismatch or incomplete stream.\nPartially received snapshot is saved."
            )
        if ds is None:
            ds = FDataset(name, "filesystem", next(self._guid), origin=clone_origin)
            self.datasets[name] = ds
        if ds.token is not None:
            self._tokens.pop(ds.token, None)
            ds.token = None
        for s in stream.snaps:
            ds.snaps.append(attrs.evolve(s, txg=next(self._txg), holds=[]))
            ds.changed = self.now
            self.events.append(("received", f"{name}@{s.name}"))
        ds.data, ds.written = stream.snaps[-1].data, 0
        ds.received_props.update(dict(stream.props))
        return Output()


class FakeRunner:
    """A Runner over FakeZfs hosts (by `Host.ssh`; None is this machine)."""

    def __init__(self, hosts: dict[Optional[str], FakeZfs]) -> None:
        self.hosts = hosts
        self.history: list[str] = []
        #: parallel sends run in threads; the fake's state changes one command at a time
        self._lock = threading.Lock()
        #: (n, action): someone else acts just before the n-th command from now (0: next)
        self.meddle: Optional[tuple[int, Callable[[], None]]] = None
        #: the next N transfers lose their ssh link mid-stream: the receive is cut (a
        #: resume token stays where `zfs recv -s` ran), the ssh process exits 255
        self.cut_links = 0
        #: the next N transfers find the link down before any data flowed (ssh: connection
        #: refused; nothing arrives)
        self.links_down = 0
        #: the next transfers' `zfs recv` refuse with these messages, one each (as a pull's
        #: ssh then: its remote `zfs send` dies of SIGPIPE, ssh exits 255 and says nothing)
        self.refusals: list[str] = []

    def _before_command(self) -> None:
        if self.meddle is None:
            return
        n, action = self.meddle
        if n > 0:
            self.meddle = (n - 1, action)
            return
        self.meddle = None
        action()

    def _zfs(self, host: Host) -> FakeZfs:
        return self.hosts[host.ssh]

    def host_clock(self, host: Host) -> Optional[int]:
        """The host's clock: its fake kernel's `now` (what its snapshots_changed has)."""
        return self._zfs(host).now

    def run(
        self,
        host: Host,
        argv: Sequence[str],
        *,
        label: str = "",
        input: Optional[str] = None,
        check: bool = True,
    ) -> Result:
        line = shlex.join(argv)
        self.history.append(line)
        try:
            with self._lock:
                self._before_command()
                out = self._zfs(host).command(list(argv))
            result = Result(line, 0, out.stdout, out.stderr)
        except FakeError as exc:
            result = Result(line, exc.code, "", str(exc))
        if check and result.returncode != 0:
            raise zfs_text.command_error(line, result.returncode, result.stderr)
        return result

    def pipeline(
        self, stages: Sequence[Stage], *, check: bool = True, watch: Optional[PipelineWatch] = None
    ) -> PipelineResult:
        line = shell_line(stages)
        self.history.append(line)
        assert len(stages) == 2, "the fake knows zfs send | zfs recv only"
        send, recv = stages
        codes, errs = [0, 0], ["", ""]
        stream = None
        with self._lock:
            self._before_command()
            link = "cut" if self.cut_links else "down" if self.links_down else None
            refusal = self.refusals.pop(0) if self.refusals else None
            if link == "cut":
                self.cut_links -= 1
            elif link == "down":
                self.links_down -= 1
            # (a link that is down: the side behind it runs nothing)
            send_unreachable = send.host.ssh is not None or recv.host.ssh is None
            if link != "down" or not send_unreachable:
                try:
                    stream = self._zfs(send.host).command(list(send.argv)).stream
                except FakeError as exc:
                    codes[0], errs[0] = exc.code, str(exc)
            target = self._zfs(recv.host)
            before = target.interrupt_next
            if link == "cut":
                target.interrupt_next += 1
            try:
                if refusal is not None:
                    raise FakeError(refusal)
                if link != "down" or send_unreachable:
                    target.command(list(recv.argv), stream)
            except FakeError as exc:
                codes[1], errs[1] = exc.code, str(exc)
            finally:
                target.interrupt_next = min(target.interrupt_next, before)
        if link is not None:
            self._link_failed(stages, link, codes, errs)
        elif refusal is not None and send.host.ssh is not None:
            codes[0], errs[0] = 255, ""
        result = PipelineResult(line, tuple(codes), tuple(errs), "")
        if check and not result.ok:
            raise pipeline_error([send.host, recv.host], result)
        return result

    @staticmethod
    def _link_failed(stages: Sequence[Stage], link: str, codes: list[int], errs: list[str]) -> None:
        """What the processes of a transfer whose ssh link failed exit with and say."""
        remote = next((i for i, s in enumerate(stages) if s.host.ssh is not None), None)
        assert remote is not None, "a link to cut: one side must be reached by ssh"
        host = stages[remote].host.ssh
        if link == "cut":
            said = f"Read from remote host {host}: Connection reset by peer"
        else:
            said = f"ssh: connect to host {host} port 22: Connection refused"
        codes[remote], errs[remote] = 255, said
        if remote == 1:  # a push: the local zfs send writes into a pipe nobody reads
            name = stages[0].argv[-1]
            codes[0], errs[0] = 1, f"warning: cannot send '{name}': Broken pipe"
        elif link == "down":  # a pull: zfs recv got no stream at all
            codes[1], errs[1] = 1, "cannot receive: failed to read from stream"
