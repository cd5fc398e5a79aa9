"""The remote guard's rules for what a received stream does: standard library only.

Contract: `walk(io, receive)` reads a `zfs send` stream through `io`, judges every BEGIN
record in it against what zfs-reconcile sends to `receive.dataset`, and forwards the
stream: `io.start()` once the first substream is judged (the guard starts `zfs recv`
only then), the bytes it has read with `io.write`, and the rest with `io.forward(n)`
(the guard splices them, unread). A stream it refuses raises Refused: before `start()`,
nothing was received; later (a package's next substream), zfs gets no more of it.

What the tool sends there, and so all that passes (send_stream.py has the shapes):
- no replication stream (`zfs send -R`: a package without "not_recursive"), no
  deduplicated, redacted or holds-carrying (`-h`) stream;
- every substream is of one dataset: the first of its name that the backup maps there
  (its last components are the path below the target path), and a snapshot of ours
  (or any, with --other-snapshots);
- the first substream is full, a clone of a snapshot under the target path
  (`zfs send -i ORIGIN@SNAP`; zfs looks the origin up by guid from the received
  dataset upwards, so one under the target path is the one it takes), or incremental
  from a snapshot or bookmark of the received dataset; each next one (`-I`) is
  incremental from the one before.

Examples (a target guard of `bak`, `--target-path backup`, receiving `backup/pool/a`):

    zfs send -p -i @bak-20260101000000 pool/a@bak-20260102000000     passes
    zfs send -R pool/a@bak-20260102000000
        refused: the stream: a replication stream (zfs send -R) creates and destroys ...
    zfs send pool/x@bak-20260102000000
        refused: the stream: 'pool/x@bak-...' is not sent to 'backup/pool/a'
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Protocol

from executors.guard import send_stream as ss
from executors.guard.rules import Policy, is_ours
from executors.guard.words import Refused, snapshot
from reconcile.errors import ReconcileError


class StreamLookups(NamedTuple):
    """What the stream rules ask zfs (the guard runs `zfs list`; tests pass functions)."""

    #: guids of the snapshots and bookmarks of a dataset (empty: none, or no dataset)
    guids: Callable[[str], frozenset[int]]
    #: guids of the snapshots at or below a dataset
    guids_under: Callable[[str], frozenset[int]]
    #: does a dataset exist?
    exists: Callable[[str], bool]


class Receive(NamedTuple):
    """One `zfs recv` the guard allowed by its command line."""

    policy: Policy
    dataset: str
    lookups: StreamLookups


class StreamIO(Protocol):
    def read(self, size: int) -> bytes:
        """Exactly `size` bytes, or fewer at the end of the stream."""

    def start(self) -> None:
        """The stream's first substream passed: start `zfs recv`."""

    def write(self, data: bytes) -> None:
        """Bytes read, on to zfs recv."""

    def forward(self, size: int) -> int:
        """Up to `size` bytes (-1: all) on to zfs recv, unread; how many there were."""

    def done(self) -> bool:
        """zfs recv has stopped reading (it failed): nothing more is read."""


class Incomplete(ReconcileError):
    """The stream ended before zfs recv was started (the sender failed, or the
    connection broke): nothing to judge, nothing received."""


def _refuse(reason: str) -> Refused:
    return Refused(f"the stream: {reason}")


def _exactly(io: StreamIO, size: int, what: str) -> bytes:
    data = io.read(size)
    if len(data) != size:
        raise Incomplete(f"the stream ends inside {what}")
    return data


def _record(io: StreamIO, what: str) -> bytes:
    return _exactly(io, ss.RECORD, what)


def _maps_to(source: str, receive: Receive) -> bool:
    """`source` is a dataset the backup sends to receive.dataset: the path below the
    target path is its last components (any --strip-path)."""
    target_path = receive.policy.target_path
    assert target_path is not None
    below = receive.dataset[len(target_path) + 1 :]
    if not below:
        return True
    parts, tail = source.split("/"), below.split("/")
    return parts[-len(tail) :] == tail


#: the pairs of a package header (send_prelim_records) and their types
_HEADER = {"fromsnap": 9, "tosnap": 9, "not_recursive": ss.NV_BOOLEAN, "raw": 1, "fss": 19}


class _Judge:
    """The BEGIN records of one stream, in order."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.dataset: Optional[str] = None  # the sent dataset (the package's)
        self.previous: Optional[int] = None  # the last substream's toguid
        self.seen: set[int] = set()  # every substream's toguid

    def package(self, begin: ss.Begin, payload: bytes) -> None:
        """A package's header: `-I` alone sends none (zfs then renames and destroys
        nothing); `-p` one of send_prelim_records' shape that says "not_recursive"."""
        self._features(begin)
        self.dataset = self._name(begin)[0]
        if not payload:
            return
        try:
            pairs = ss.nvlist_pairs(payload)
        except ss.StreamError as exc:
            raise _refuse(str(exc)) from None
        if pairs.get("not_recursive") != ss.NV_BOOLEAN:
            raise _refuse(
                "a replication stream (zfs send -R) creates and destroys datasets; "
                "zfs-reconcile never sends one"
            )
        strange = sorted(n for n, kind in pairs.items() if _HEADER.get(n) != kind)
        if strange:
            raise _refuse(f"a package header with {strange[0]!r}, which zfs send never writes")

    def _features(self, begin: ss.Begin) -> None:
        for feature, what in (
            (ss.FEATURE_DEDUP, "a deduplicated stream"),
            (ss.FEATURE_REDACTED, "a redacted stream"),
            (ss.FEATURE_HOLDS, "a stream with holds (zfs send -h)"),
        ):
            if begin.features & feature:
                raise _refuse(f"{what}: zfs-reconcile never sends one")

    def _name(self, begin: ss.Begin) -> tuple[str, str]:
        dataset, short = snapshot("the stream", begin.toname)
        policy = self.receive.policy
        if not _maps_to(dataset, self.receive):
            raise _refuse(f"{begin.toname!r} is not sent to {self.receive.dataset!r}")
        if not (policy.other_snapshots or is_ours(policy, short)):
            raise _refuse(f"snapshot {begin.toname!r} is not one of ours")
        return dataset, short

    def substream(self, begin: ss.Begin) -> None:
        if begin.compound:
            raise _refuse("a package inside a package")
        self._features(begin)
        if begin.payload and not begin.features & (ss.FEATURE_RAW | ss.FEATURE_RESUMING):
            raise _refuse("a substream header with a payload (only raw or resumed ones have one)")
        dataset, _ = self._name(begin)
        if self.dataset is not None and dataset != self.dataset:
            raise _refuse(
                f"{begin.toname!r} in a stream of {self.dataset!r} would create another dataset"
            )
        self.dataset = dataset
        first = self.previous is None
        target = self.receive.dataset
        lookups = self.receive.lookups
        # (asked first: where the target exists, its listing says its parent does too)
        on_target = lookups.guids(target)
        if first and "/" in target and not lookups.exists(target.rpartition("/")[0]):
            # (zfs would look for a parent elsewhere, by the guid the package names)
            raise _refuse(f"the parent of {target!r} does not exist")
        # (zfs skips a snapshot it has: what it skips it reads without judging)
        if begin.toguid in self.seen or begin.toguid in on_target:
            raise _refuse(f"snapshot guid {begin.toguid} is on {target!r} already")
        self.seen.add(begin.toguid)
        if begin.clone:
            path = self.receive.policy.target_path
            assert path is not None
            if not first or begin.fromguid not in lookups.guids_under(path):
                raise _refuse(
                    f"a clone of snapshot guid {begin.fromguid}, which is not a snapshot "
                    f"under the target path {path!r}"
                )
        elif begin.fromguid == 0:
            if not first:
                raise _refuse("a full stream after the first in a package")
        elif first:
            if begin.fromguid not in on_target:
                raise _refuse(
                    f"an incremental stream from guid {begin.fromguid}, which is not a "
                    f"snapshot or bookmark of {target!r}"
                )
        elif begin.fromguid != self.previous:
            raise _refuse("an incremental stream that does not follow the one before")
        self.previous = begin.toguid


def _begin(record: bytes) -> tuple[str, ss.Begin]:
    try:
        order = ss.byte_order(record)
        return order, ss.parse_begin(record, order)
    except ss.StreamError as exc:
        raise _refuse(str(exc)) from None


def _payload(record: bytes, order: str) -> tuple[int, int]:
    try:
        return ss.sized(record, order)
    except ss.StreamError as exc:
        raise _refuse(str(exc)) from None


def walk(io: StreamIO, receive: Receive) -> None:
    """Judge and forward the stream (the module's contract)."""
    judge = _Judge(receive)
    first = io.read(ss.RECORD)
    if not first:
        raise Incomplete("the stream is empty (the sending side sent nothing)")
    if len(first) != ss.RECORD:
        raise Incomplete("the stream ends inside its first record")
    order, begin = _begin(first)
    head = first + _exactly(io, begin.payload, "the first record's payload")
    if not begin.compound:
        judge.substream(begin)
        io.start()
        io.write(head)
        io.forward(-1)  # (zfs recv reads one substream; nothing after it counts)
        return
    judge.package(begin, head[ss.RECORD :])
    end = _record(io, "the package header")
    if _payload(end, order) != (ss.END, 0):
        raise _refuse("a package header without its END record")
    sub = _record(io, "the first substream")
    order, begin = _begin(sub)
    judge.substream(begin)
    io.start()
    io.write(head + end + sub)
    io.forward(begin.payload)
    _substreams(io, judge, order)


def _substreams(io: StreamIO, judge: _Judge, order: str) -> None:
    """The records after a package's first BEGIN, to its final END."""
    inside = True
    # (once per record, thousands per GiB: the names are bound here, and the common
    # record, a payload inside a substream, takes the fewest steps)
    read, write, forward, done, record_size = io.read, io.write, io.forward, io.done, ss.RECORD
    while not done():
        record = read(record_size)
        if len(record) != record_size:
            write(record)  # (zfs reports the stream cut short)
            return
        if inside:
            kind, size = _payload(record, order)
            if kind == ss.BEGIN:
                raise _refuse("a BEGIN record inside a substream")
            inside = kind != ss.END
            write(record)
            if size and forward(size) != size:
                return
            continue
        kind = _payload(record, order)[0]
        if kind == ss.END:
            io.write(record)  # the package's end
            io.forward(-1)
            return
        if kind != ss.BEGIN:
            raise _refuse("a record between two substreams")
        order, begin = _begin(record)
        judge.substream(begin)
        io.write(record)
        io.forward(begin.payload)
        inside = True
