"""Verify, decided and judged: which snapshots of each selected dataset are compared, and
what two walks of them (executors.walk, one per side) say. Pure: the observed datasets
and the walks' lines come in, values go out.

    a pair whose copy has a snapshot in common   -> compared (the newest, --snapshot NAME,
                                                   or --all-common: every one)
    no copy, or no snapshot in common            -> NOT VERIFIABLE (why)
    the copy is encrypted and its key not loaded -> NOT VERIFIABLE, after a check by guid:
                                                   every snapshot of the copy is one of
                                                   the source's (snapshot or bookmark)

Common means by guid, or by name with --no-guid-check (as the backup pairs them).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

import attrs

from reconcile.model import VOLUME, Dataset, Snapshot


class Outcome(enum.Enum):
    VERIFIED = "verified"
    DIFFERENT = "DIFFERENT"
    NOT_VERIFIABLE = "not verifiable"


#: the exit codes: all verified, a difference, could not verify (Nagios' UNKNOWN)
EXIT_VERIFIED = 0
EXIT_DIFFERENT = 1
EXIT_UNVERIFIABLE = 3

#: differing paths named per dataset; the rest are counted
SHOWN = 20


@attrs.frozen
class VerifyRequest:
    """What the command line asks beyond the job."""

    snapshot: Optional[str] = None
    all_common: bool = False
    #: --sample: the fraction of each file's chunks that is read (None: all)
    sample: Optional[float] = None
    #: --budget: seconds for the whole run; the walks stop cleanly when they are up
    budget: Optional[float] = None
    parallel: int = 1


def record_property(property_name: str) -> str:
    """The user property on a target copy that records its last full verification:
    `autobackup:NAME:verified` = "SECONDS @SNAPSHOT" (on the copy itself, so that a later
    `status`, from any machine, reads it with the backup's own state)."""
    return f"{property_name}:verified"


def record_value(now: float, snapshot: str) -> str:
    return f"{int(now)} @{snapshot}"


def parse_record(value: str) -> Optional[tuple[float, str]]:
    """(time, snapshot) of a record; None when it is not one (set by hand, damaged)."""
    seconds, _, snapshot = value.partition(" @")
    if not seconds.isdigit() or not snapshot:
        return None
    return float(seconds), snapshot


def verify_tag(hold_tag: str) -> str:
    """The hold tag of a verification: the backup's own, marked (a backup run keeps a
    snapshot someone else holds, and never releases this tag)."""
    return f"{hold_tag}:verify"


@attrs.frozen
class Task:
    """One dataset to verify: its copy, and the snapshot pairs to compare (source name,
    target name), oldest first. `why` is set when it cannot be verified."""

    source: str
    target: str
    volume: bool = False
    snapshots: tuple[tuple[str, str], ...] = ()
    why: Optional[str] = None
    #: the copy is encrypted: its key must be loaded to read it
    encrypted: bool = False
    #: the last pair compared is the newest snapshot both have (a verification of it is
    #: recorded; one of an older snapshot, --snapshot OLD, is not: status would take it
    #: for the state of the backup)
    newest: bool = False


def _common(source: Dataset, target: Dataset, guid_check: bool) -> list[tuple[Snapshot, Snapshot]]:
    """Every snapshot both have, oldest first: by guid, or by name (--no-guid-check)."""
    if guid_check:
        theirs = {s.guid: s for s in target.snapshots}
        return [(s, theirs[s.guid]) for s in source.snapshots if s.guid in theirs]
    names = {s.name: s for s in target.snapshots}
    return [(s, names[s.name]) for s in source.snapshots if s.name in names]


def task(
    source: Dataset,
    target_name: str,
    target: Optional[Dataset],
    *,
    guid_check: bool = True,
    snapshot: Optional[str] = None,
    all_common: bool = False,
) -> Task:
    """What is compared for one selected dataset."""
    volume = source.type == VOLUME
    if target is None:
        return Task(source.name, target_name, volume, why="the target has no copy of it")
    common = _common(source, target, guid_check)
    encrypted = target.encryption != "off"
    if snapshot is not None:
        chosen = [(s, t) for s, t in common if s.name == snapshot]
        if not chosen:
            why = f"@{snapshot} is not a snapshot both sides have"
            return Task(source.name, target_name, volume, why=why, encrypted=encrypted)
    elif all_common:
        chosen = common
    else:
        chosen = common[-1:]
    if not chosen:
        how = "by guid" if guid_check else "by name"
        why = f"no snapshot in common ({how})"
        return Task(source.name, target_name, volume, why=why, encrypted=encrypted)
    pairs = tuple((s.name, t.name) for s, t in chosen)
    newest = chosen[-1] == common[-1]
    return Task(source.name, target_name, volume, pairs, encrypted=encrypted, newest=newest)


def locked_why(source: Dataset, target: Dataset) -> str:
    """Why a copy whose key is not loaded is not verifiable, and what its guids say."""
    known = {s.guid for s in source.snapshots} | {b.guid for b in source.bookmarks}
    foreign = [s.name for s in target.snapshots if s.guid not in known]
    if foreign:
        return (
            f"its key is not loaded (encrypted copy); {len(foreign)} of its snapshots match "
            f"no source snapshot or bookmark by guid: @{foreign[0]}"
        )
    return (
        f"its key is not loaded (encrypted copy); by guid, each of its "
        f"{len(target.snapshots)} snapshots is one of the source's"
    )


# --- what the walks say -------------------------------------------------------------

#: the walker's xattrs digest of a path that has none (SHA-256 of nothing)
NO_XATTRS = hashlib.sha256(b"").hexdigest()

#: the columns of a walk's line (executors.walk), after the path
FIELDS = ("kind", "mode", "owner", "group", "size", "mtime", "link", "xattrs", "contents")


@attrs.frozen
class Walked:
    """One side's walk: path -> its record; what was read; where a budget stopped it."""

    entries: Mapping[str, tuple[Any, ...]]
    #: the walk order key of every path (its parts, as bytes: the walker's order)
    order: Mapping[str, tuple[bytes, ...]]
    read: int = 0
    skipped: int = 0
    files: int = 0
    #: the key where --budget stopped the walk (None: it walked everything)
    stopped: Optional[tuple[bytes, ...]] = None


def _key(parts: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(p.encode("utf-8", "surrogateescape") for p in parts)


#: --sample's smallest fraction (a thousand slices)
MIN_SAMPLE = 0.001


def sample_slices(fraction: float, now: float) -> tuple[int, int]:
    """--sample FRACTION as the walker's (N, K): the chunks fall in N slices of about
    FRACTION each, and the slice read is the day's (days since the epoch, modulo N).
    Runs on N consecutive days read every chunk once; runs every D days do when D and N
    have no common divisor (weekly runs: not with N = 7)."""
    buckets = max(1, round(1 / fraction))
    return buckets, int(now // 86400) % buckets


def parse_walk(text: str) -> Walked:
    """A walk's output as values (ValueError when it is not a walk's output)."""
    entries: dict[str, tuple[Any, ...]] = {}
    order: dict[str, tuple[bytes, ...]] = {}
    end: Optional[Mapping[str, Any]] = None
    for line in text.splitlines():
        value = json.loads(line)
        if isinstance(value, dict):
            end = value["end"]
            continue
        if not isinstance(value, list) or len(value) != 11:
            raise ValueError(f"not a walk's line: {line[:80]}")
        path = value[0]
        entries[path] = tuple(value[1:])
        order[path] = () if path == "." else _key(path.split("/"))
    if end is None:
        raise ValueError("the walk did not finish (no end line)")
    stopped = end.get("stopped")
    return Walked(
        entries,
        order,
        read=int(end["read"]),
        skipped=int(end["skipped"]),
        files=int(end["files"]),
        stopped=None if stopped is None else _key(stopped),
    )


@attrs.frozen
class Difference:
    path: str
    #: what differs: "only on source", "only on target", "contents", "mode, mtime", or
    #: "unreadable on target: EIO: Input/output error"
    what: str


@attrs.frozen
class Compared:
    differences: tuple[Difference, ...]
    paths: int
    #: both walks finished (no --budget ran out)
    complete: bool = True


def _covered(key: tuple[bytes, ...], stop: Optional[tuple[bytes, ...]]) -> bool:
    return stop is None or key < stop


def compare(source: Walked, target: Walked) -> Compared:
    """Both ways: paths on one side only, and what differs of the paths both have. When a
    budget stopped a walk, only the paths both walks reached are compared."""
    stops = [w.stopped for w in (source, target) if w.stopped is not None]
    stop = min(stops) if stops else None
    found: list[Difference] = []
    paths = 0
    keys = {**source.order, **target.order}
    for path in sorted(keys, key=lambda p: keys[p]):
        if not _covered(keys[path], stop):
            continue
        paths += 1
        mine, theirs = source.entries.get(path), target.entries.get(path)
        if mine is None:
            found.append(Difference(path, "only on target"))
        elif theirs is None:
            found.append(Difference(path, "only on source"))
        else:
            what = _what_differs(mine, theirs)
            if what:
                found.append(Difference(path, what))
    return Compared(tuple(found), paths, complete=stop is None)


def _what_differs(mine: Sequence[Any], theirs: Sequence[Any]) -> str:
    for side, record in (("source", mine), ("target", theirs)):
        if record[-1] is not None:
            return f"unreadable on {side}: {record[-1]}"
    names = []
    for index, name in enumerate(FIELDS):
        a, b = mine[index], theirs[index]
        if name == "xattrs" and (a is None or b is None):
            # (one side does not support them: the other must have none to lose)
            if (a or NO_XATTRS) != NO_XATTRS or (b or NO_XATTRS) != NO_XATTRS:
                names.append("xattrs (not supported on one side)")
            continue
        if a != b:
            names.append(name)
    return ", ".join(names)


@attrs.frozen
class Result:
    """One dataset's verdict."""

    dataset: str
    target: str
    outcome: Outcome
    #: the snapshots compared, or why it could not be
    detail: str
    differences: tuple[Difference, ...] = ()
    paths: int = 0
    read: int = 0
    skipped: int = 0

    def shown(self) -> list[str]:
        """The differing paths as the table names them (the first SHOWN, then a count)."""
        lines = [f"{d.path}: {d.what}" for d in self.differences[:SHOWN]]
        rest = len(self.differences) - SHOWN
        if rest > 0:
            lines.append(f"... and {rest} more")
        return lines


def exit_code(results: Iterable[Result]) -> int:
    outcomes = {r.outcome for r in results}
    if Outcome.DIFFERENT in outcomes:
        return EXIT_DIFFERENT
    if Outcome.NOT_VERIFIABLE in outcomes:
        return EXIT_UNVERIFIABLE
    return EXIT_VERIFIED
