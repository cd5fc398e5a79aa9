"""All knowledge of zfs' text output lives here: parsing and error classification.

The tool asks zfs for machine-readable output (`-H` tab separated, `-p` exact numbers)
and turns it into model values. zfs error text becomes typed errors. Where OpenZFS
versions word things differently, the alternatives are listed side by side. (The few
rows the remote guard reads too are in reconcile.zfs_rows, which needs nothing but the
standard library; they are re-exported here.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Optional

import attrs

from reconcile import errors, guard_protocol
from reconcile.model import FILESYSTEM, VOLUME, Bookmark, Dataset, Selection, Snapshot
from reconcile.zfs_rows import parse_resume_info

__all__ = ["parse_resume_info"]  # (and everything public below)

#: Properties observation asks `zfs list` for, in this order.
LIST_PROPERTIES = (
    "name",
    "type",
    "guid",
    "createtxg",
    "creation",
    "userrefs",
    "written",
    "receive_resume_token",
    "origin",
    "encryption",
    "clones",
)
#: the column observation adds for the listing cache (OpenZFS 2.2 and newer)
CHANGED = "snapshots_changed"
#: Pool features observation asks `zpool get` for: they decide `zfs send -L -e` and
#: `zfs recv -s`; `bookmarks` (and `bookmark_v2` for raw sends of encrypted datasets)
#: decide whether a dataset's chain is kept with bookmarks
POOL_FEATURES = (
    "large_blocks",
    "embedded_data",
    "extensible_dataset",
    "bookmarks",
    "bookmark_v2",
)
#: their properties, as `zpool get` takes them
FEATURE_PROPERTIES = ",".join(f"feature@{f}" for f in POOL_FEATURES)


def _rows(output: str, fields: int) -> Iterator[list[str]]:
    for line in output.split("\n"):
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != fields:
            raise errors.ZfsError(f"Unexpected zfs output (expected {fields} columns): {line!r}")
        yield cols


def _int(value: str) -> int:
    return 0 if value in ("-", "") else int(value)


def _opt(value: str) -> Optional[str]:
    return None if value in ("-", "") else value


@attrs.frozen
class ListedDataset:
    """A filesystem or volume row of `zfs list`, before its snapshots are attached."""

    name: str
    type: str
    guid: int
    written: int
    resume_token: Optional[str]
    origin: Optional[str]
    encryption: str
    #: `snapshots_changed` (None: not asked for, or `-`)
    changed: Optional[int] = None

    @property
    def pool(self) -> str:
        return self.name.split("/", 1)[0]


@attrs.frozen
class Listing:
    """What one `zfs list` printed, by type."""

    datasets: list[ListedDataset]
    snapshots: list[Snapshot]
    bookmarks: list[Bookmark]

    @property
    def names(self) -> list[str]:
        """The dataset each row is of."""
        return [
            *(d.name for d in self.datasets),
            *(s.dataset for s in self.snapshots),
            *(b.dataset for b in self.bookmarks),
        ]


def parse_list(output: str, *, changed: bool = False) -> Listing:
    """Parse `zfs list -H -p -o <LIST_PROPERTIES>[,snapshots_changed] -t filesystem,volume,
    snapshot[,bookmark]` (a bookmark's row has "-" for what it does not have: userrefs,
    written, ...)."""
    datasets: list[ListedDataset] = []
    snapshots: list[Snapshot] = []
    bookmarks: list[Bookmark] = []
    for row in _rows(output, len(LIST_PROPERTIES) + changed):
        name, kind, guid, txg, creation, userrefs, written, token, origin, enc, clones = row[:11]
        stamp = _opt(row[11]) if changed else None
        if kind == "snapshot":
            dataset, _, short = name.partition("@")
            snapshots.append(
                Snapshot(
                    dataset=dataset,
                    name=short,
                    guid=int(guid),
                    createtxg=int(txg),
                    creation=int(creation),
                    userrefs=_int(userrefs),
                    written=_int(written),
                    clones=tuple(c for c in clones.split(",") if c not in ("-", "")),
                )
            )
        elif kind in (FILESYSTEM, VOLUME):
            datasets.append(
                ListedDataset(
                    name=name,
                    type=kind,
                    guid=int(guid),
                    written=_int(written),
                    resume_token=_opt(token),
                    origin=_opt(origin),
                    encryption=enc if enc not in ("-", "") else "off",
                    changed=int(stamp) if stamp is not None else None,
                )
            )
        elif kind == "bookmark":
            dataset, _, short = name.partition("#")
            bookmarks.append(Bookmark(dataset, short, int(guid), int(txg), int(creation)))
    return Listing(datasets, snapshots, bookmarks)


def parse_selection(output: str) -> dict[str, Selection]:
    """Parse `zfs get -H -p -o name,value,source PROPERTY` (filesystems and volumes)."""
    result: dict[str, Selection] = {}
    for name, value, source in _rows(output, 3):
        result[name] = Selection(value=value, source=source)
    return result


def parse_local(output: str) -> dict[str, dict[str, Optional[str]]]:
    """Parse `zfs get -H -p -o name,property,received -s local all ...`: dataset -> its
    properties set locally -> the value received under the local one (None: none). A
    received value may hold tabs (the last column) or newlines (a line that goes on)."""
    result: dict[str, dict[str, Optional[str]]] = {}
    last: Optional[tuple[str, str]] = None
    for line in output.split("\n")[:-1] if output.endswith("\n") else output.split("\n"):
        parts = line.split("\t", 2)
        if len(parts) < 3:
            if last is None:
                raise errors.ZfsError(f"Unexpected zfs get output: {line!r}")
            name, prop = last
            result[name][prop] = f"{result[name][prop] or ''}\n{line}"
            continue
        name, prop, received = parts
        result.setdefault(name, {})[prop] = None if received == "-" else received
        last = name, prop
    return result


def parse_received(output: str) -> dict[str, str]:
    """Parse `zfs get -H -p -o name,received PROP ...`: dataset -> the value it received
    (datasets that received none are left out)."""
    result = {}
    for line in output.split("\n"):
        if not line:
            continue
        name, sep, value = line.partition("\t")
        if not sep:
            raise errors.ZfsError(f"Unexpected zfs get output: {line!r}")
        if value not in ("-", ""):
            result[name] = value
    return result


def parse_snapshot_sizes(output: str) -> list[tuple[str, int, int]]:
    """Parse `zfs list -H -p -o name,creation,referenced -t snapshot ...`: (full name,
    creation time, referenced bytes), in the listing's order."""
    result = []
    for line in output.split("\n"):
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != 3 or not cols[1].isdigit() or not cols[2].isdigit():
            raise errors.ZfsError(f"Unexpected zfs list output: {line!r}")
        result.append((cols[0], int(cols[1]), int(cols[2])))
    return result


def parse_holds(output: str) -> dict[str, tuple[str, ...]]:
    """Parse `zfs holds -H SNAP...`: snapshot full name -> hold tags."""
    result: dict[str, list[str]] = {}
    for line in output.split("\n"):
        if not line:
            continue
        # name<TAB>tag<TAB>timestamp; the tag itself may not contain a tab
        cols = line.split("\t")
        if len(cols) < 2:
            raise errors.ZfsError(f"Unexpected zfs holds output: {line!r}")
        result.setdefault(cols[0], []).append(cols[1])
    return {name: tuple(tags) for name, tags in result.items()}


def parse_pool_features(output: str) -> dict[str, frozenset[str]]:
    """Parse `zpool get -H -o name,property,value feature@...`: pool -> usable features."""
    return parse_pools(output)[1]


def parse_pools(output: str) -> tuple[dict[str, int], dict[str, frozenset[str]]]:
    """Parse `zpool get -H -o name,property,value guid,feature@...`: each pool's guid
    (where it is a number), and each pool's usable features (where any was asked)."""
    guids: dict[str, int] = {}
    result: dict[str, set[str]] = {}
    for pool, prop, value in _rows(output, 3):
        if prop == "guid":
            if value.isdigit():
                guids[pool] = int(value)
            continue
        result.setdefault(pool, set())
        if value in ("enabled", "active"):
            result[pool].add(prop.partition("@")[2])
    return guids, {pool: frozenset(features) for pool, features in result.items()}


def assemble(
    listed: Sequence[ListedDataset],
    snapshots: Iterable[Snapshot],
    selection: Optional[dict[str, Selection]] = None,
    holds: Optional[dict[str, tuple[str, ...]]] = None,
    bookmarks: Iterable[Bookmark] = (),
) -> dict[str, Dataset]:
    """Attach snapshots and bookmarks (createtxg order), selection values and holds to
    datasets."""
    by_dataset: dict[str, list[Snapshot]] = {}
    for snap in snapshots:
        tags = holds.get(snap.full_name) if holds else None
        held = attrs.evolve(snap, holds=tags) if tags else snap
        by_dataset.setdefault(snap.dataset, []).append(held)
    marks: dict[str, list[Bookmark]] = {}
    for mark in bookmarks:
        marks.setdefault(mark.dataset, []).append(mark)
    result: dict[str, Dataset] = {}
    for item in sorted(listed, key=lambda d: d.name):
        snaps = sorted(by_dataset.get(item.name, ()), key=lambda s: s.createtxg)
        result[item.name] = Dataset(
            name=item.name,
            type=item.type,
            guid=item.guid,
            written=item.written,
            resume_token=item.resume_token,
            origin=item.origin,
            encryption=item.encryption,
            selection=(selection or {}).get(item.name),
            snapshots=tuple(snaps),
            bookmarks=tuple(sorted(marks.get(item.name, ()), key=lambda b: b.createtxg)),
        )
    return result


def parse_send_size(text: str) -> Optional[int]:
    """The estimated stream size from `zfs send -nP ...` ("size<TAB>N")."""
    for line in text.split("\n"):
        cols = line.strip().split("\t")
        if len(cols) == 2 and cols[0] == "size" and cols[1].isdigit():
            return int(cols[1])
    return None


# --- permission denied ---------------------------------------------------------------

#: `zfs recv` of a stream with a property the user may not set: zfs receives the data,
#: says this on stderr and exits 0 (measured, OpenZFS 2.3, also for `-x PROPERTY`)
_PROPERTY_DENIED = re.compile(r"cannot receive (\S+) property on (\S+?): permission denied")
#: the name in `cannot rollback 'pool/a': permission denied`, `warning: cannot send
#: 'pool/a@x': ...`, `cannot create bookmark 'pool/a#x': ...`; zfs names none in `cannot
#: hold: ...`, `cannot destroy snapshots: ...`, `cannot create snapshots : ...`,
#: `cannot receive new filesystem stream: ...`
_QUOTED = re.compile(r"'([^']+)'")
#: the operation: `cannot send`, `cannot receive`, `cannot hold`, ...
_CANNOT = re.compile(r"cannot (\w+)")


@attrs.frozen
class Denied:
    """One "permission denied" of zfs: the dataset it names (None: it names none), the
    property when it was a received property that could not be set, the operation zfs
    names (`send`, `receive`, `hold`, ...), and whether a receive was to create its
    dataset (`cannot receive new filesystem stream`)."""

    dataset: Optional[str]
    property: Optional[str] = None
    operation: str = ""
    new_dataset: bool = False


def permission_denied(stderr: str) -> list[Denied]:
    """Every "permission denied" in a zfs command's stderr (delegated permissions
    missing; not ssh's `Permission denied (publickey)`)."""
    found = []
    for line in stderr.split("\n"):
        lowered = line.lower()
        if "permission denied" not in lowered or "(publickey" in lowered:
            continue
        match = _PROPERTY_DENIED.search(line)
        if match:
            found.append(Denied(match.group(2), match.group(1), "receive"))
            continue
        quoted = _QUOTED.search(line)
        name = quoted.group(1) if quoted else None
        cannot = _CANNOT.search(lowered)
        found.append(
            Denied(
                re.split("[@#]", name, maxsplit=1)[0] if name else None,
                operation=cannot.group(1) if cannot else "",
                new_dataset="new filesystem stream" in lowered,
            )
        )
    return found


# --- errors ------------------------------------------------------------------------


def unknown_property(text: str, prop: str) -> bool:
    """Whether zfs refused a property list for not knowing `prop` (an OpenZFS older than
    the property: "bad property list: invalid property 'snapshots_changed'")."""
    return "invalid property" in text and prop in text


def first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


_NOT_FOUND = ("dataset does not exist", "could not find any snapshots to destroy")
#: `zfs destroy DS#NAME` of a bookmark that is not there
_BOOKMARK_GONE = re.compile(r"bookmark '[^']*' does not exist")
_BUSY = ("dataset is busy", "pool or dataset is busy", "is busy")
_DENIED = ("permission denied",)


def command_error(command: str, returncode: int, stderr: str) -> errors.ReconcileError:
    """Turn a failed command's stderr into a typed error with a one-line message."""
    text = stderr.lower()
    detail = first_line(stderr) or f"exit code {returncode}"
    message = f"Command failed: {detail}"
    refusal = guard_protocol.refused(returncode, stderr)
    if refusal is not None:
        return errors.GuardRefused(message, command, stderr, refusal.reason, refusal.read_only)
    if returncode == 127:
        # POSIX shells exit 127 when a program is missing ("sh: 1: mbuffer: not found")
        return errors.CommandNotFound(f"Command not found on the host: {detail}")
    if any(s in text for s in _NOT_FOUND) or _BOOKMARK_GONE.search(text):
        return errors.DatasetNotFound(message, command, stderr)
    if any(s in text for s in _BUSY):
        return errors.DatasetBusy(message, command, stderr)
    if any(s in text for s in _DENIED):
        return errors.PermissionDenied(message, command, stderr)
    return errors.ZfsError(message, command, stderr)


def hold_already_done(hold: bool, text: str) -> bool:
    """zfs' complaint about a hold (release) that is there (gone) already."""
    return ("tag already exists" if hold else "no such tag") in text


#: what ssh says when it cannot connect, or when its connection breaks mid-stream
#: ("Read from remote host h: Connection reset by peer", "client_loop: send
#: disconnect: Broken pipe", "Connection to h closed by remote host.")
_SSH_FAILURES = (
    "ssh:",
    "permission denied (publickey",
    "host key verification failed",
    "connection refused",
    "connection timed out",
    "could not resolve hostname",
    "connection closed by",
    "closed by remote host",
    "connection reset",
    "broken pipe",
    "client_loop:",
    "killed by signal",
)


def _says(stderr: str, words: tuple[str, ...]) -> bool:
    """stderr holds one of `words` (lowercase), whatever its case."""
    text = stderr.lower()
    return any(word in text for word in words)


def looks_like_ssh_failure(stderr: str) -> bool:
    return _says(stderr, _SSH_FAILURES)


#: a writer whose reader went away (its own failure is the reader's doing)
_PIPE_CLOSED = ("broken pipe",)
#: a zfs recv whose stream ended early or arrived damaged: what a writer that died
#: upstream leaves it with ("cannot receive incremental stream: checksum mismatch or
#: incomplete stream", "cannot receive: failed to read from stream")
_STREAM_CUT = (
    "incomplete stream",
    "checksum mismatch",
    "failed to read from stream",
    "invalid backup stream",
    "premature end",
    "unexpected end",
)


#: `zfs send -P` on stderr: "full<TAB>DS@SNAP<TAB>N", "incremental<TAB>...", "size<TAB>N",
#: and once a second "HH:MM:SS<TAB>BYTES<TAB>DS@SNAP"
_SEND_PROGRESS = re.compile(r"^(full|incremental|size|resume|\d\d:\d\d:\d\d)\t")


def without_send_progress(stderr: str) -> str:
    """stderr without the lines `zfs send -P` prints while all is well."""
    return "\n".join(line for line in stderr.split("\n") if not _SEND_PROGRESS.match(line))


def says_pipe_closed(stderr: str) -> bool:
    """The process failed writing to a pipe whose reader was gone (EPIPE)."""
    return _says(stderr, _PIPE_CLOSED)


def says_stream_cut(stderr: str) -> bool:
    """zfs recv complains that its stream ended early or arrived damaged."""
    return _says(stderr, _STREAM_CUT)
