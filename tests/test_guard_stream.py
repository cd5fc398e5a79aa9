"""The guard judges what a received stream does (executors.guard.stream): every stream
the tool sends passes byte for byte, and each forged one is refused, before zfs recv
starts when its first substream is the forged part, else before that substream."""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executors.guard import program as guard
from executors.guard import receive as guard_receive
from executors.guard import send_stream as ss
from executors.guard import stream as guard_stream
from executors.guard.words import Refused
from tests import sendstreams as mk

OURS, OURS2, OURS3 = "bak-20260101000000", "bak-20260102000000", "bak-20260103000000"
TARGET = "backup/pool/a"
#: guids on the target: backup/pool/a has 1001 (its last snapshot) and a bookmark 1500;
#: backup/pool/o@s (under the target path) is 3000; dst/private@s (outside) is 4000
GUIDS = {TARGET: frozenset({1001, 1500})}
UNDER = {"backup": frozenset({1001, 3000})}


class Memory:
    """StreamIO over bytes: what zfs recv would have got, and whether it started."""

    def __init__(self, data: bytes) -> None:
        self.input = io.BytesIO(data)
        self.output = bytearray()
        self.started = False

    def read(self, size: int) -> bytes:
        return self.input.read(size)

    def start(self) -> None:
        self.started = True

    def write(self, data: bytes) -> None:
        assert self.started
        self.output += data

    def forward(self, size: int) -> int:
        data = self.input.read() if size < 0 else self.input.read(size)
        self.write(data)
        return len(data)

    def done(self) -> bool:
        return False


def _receive(*options: str, dataset: str = TARGET) -> guard_stream.Receive:
    policy = guard.policy_from(guard.build_parser().parse_args(["bak", *options]))
    lookups = guard_stream.StreamLookups(
        guids=lambda ds: GUIDS.get(ds, frozenset()),
        guids_under=lambda path: UNDER.get(path, frozenset()),
        exists=lambda ds: ds in ("backup", "backup/pool", "backup/pool/c"),
    )
    return guard_stream.Receive(policy, dataset, lookups)


def _walk(data: bytes, *options: str, dataset: str = TARGET) -> Memory:
    memory = Memory(data)
    options = options or ("--target-path", "backup")
    guard_stream.walk(memory, _receive(*options, dataset=dataset))
    return memory


def _refused(data: bytes, *options: str, dataset: str = TARGET) -> tuple[str, Memory]:
    memory = Memory(data)
    with pytest.raises(Refused) as refused:
        guard_stream.walk(memory, _receive(*(options or ("--target-path", "backup")),
                                           dataset=dataset))  # fmt: skip
    return refused.value.message, memory


def _hidden_recursive() -> bytes:
    """A -R package header that libnvpair reads as {x, tosnap} (recursive) and a reader
    that skips a pair by its own size field as {x, not_recursive}."""
    tosnap = mk.xdr_string("tosnap") + struct.pack(">ii", 9, 1) + mk.xdr_string(f"pool/a@{OURS}")
    tosnap = struct.pack(">ii", 8 + len(tosnap), 64) + tosnap
    boolean = mk.xdr_string("not_recursive") + struct.pack(">ii", ss.NV_BOOLEAN, 0)
    boolean = struct.pack(">ii", 8 + len(boolean), 64) + boolean
    x = mk.xdr_string("x") + struct.pack(">ii", ss.NV_BOOLEAN, 0)
    x = struct.pack(">ii", 8 + len(x) + len(tosnap) + 8, 64) + x
    header = bytes([1, 1, 0, 0]) + struct.pack(">iI", 0, 1) + x + tosnap + b"\0" * 8
    return mk.package(FULL, header=header + boolean + b"\0" * 8)


FULL = mk.substream(f"pool/a@{OURS}", toguid=1000)
INCREMENTAL = mk.substream(f"pool/a@{OURS2}", toguid=1002, fromguid=1001)
THEN = mk.substream(f"pool/a@{OURS3}", toguid=1003, fromguid=1002)

#: (name, stream, options, dataset): what the tool sends, each passes unchanged
PASSING = [
    ("a full send", FULL, (), TARGET),
    ("a full send with -p (a package)", mk.package(FULL), (), TARGET),
    ("an incremental", INCREMENTAL, (), TARGET),
    ("-I with -p: two substreams", mk.package(INCREMENTAL, THEN), (), TARGET),
    ("-I alone (decrypted): a package without a header", mk.package(INCREMENTAL, THEN, props=False),
     (), TARGET),
    ("from a bookmark", mk.substream(f"pool/a@{OURS2}", toguid=1002, fromguid=1500), (), TARGET),
    ("a clone of our snapshot", mk.substream(f"pool/c@{OURS}", toguid=7, fromguid=3000,
     flags=ss.FLAG_CLONE), (), "backup/pool/c"),
    ("resumed", mk.substream(f"pool/a@{OURS2}", toguid=1002, fromguid=1001,
                             features=ss.FEATURE_RESUMING, payload=mk.nvlist("x")), (), TARGET),
    ("raw, large blocks, embedded", mk.substream(f"pool/a@{OURS}", toguid=5, features=(1 << 24) | (1 << 19) | (1 << 16),
     payload=mk.nvlist("crypt_keydata")), (), TARGET),
    ("big-endian", mk.substream(f"pool/a@{OURS}", toguid=5, order=">"), (), TARGET),
    ("--strip-path 1", FULL, (), "backup/a"),
    ("onto the target path itself", FULL, (), "backup"),
    ("another snapshot, --other-snapshots", mk.substream("pool/a@manual", toguid=5),
     ("--target-path", "backup", "--other-snapshots"), TARGET),
    ("what follows a plain stream is not read", FULL + b"anything", (), TARGET),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "data", "options", "dataset"), PASSING, ids=[p[0] for p in PASSING]
)
def test_every_stream_the_tool_sends_passes_unchanged(
    name: str, data: bytes, options: tuple[str, ...], dataset: str
) -> None:
    memory = _walk(data, *options, dataset=dataset)
    assert memory.started and bytes(memory.output) == data


#: (name, stream, dataset, reason): refused before zfs recv starts
FORGED = [
    ("zfs send -R", mk.package(FULL, recursive=True), TARGET,
     "a replication stream (zfs send -R) creates and destroys datasets"),
    ("a clone of the host's own snapshot", mk.substream(f"pool/c@{OURS}", fromguid=4000,
     flags=ss.FLAG_CLONE), "backup/pool/c", "a clone of snapshot guid 4000, which is not a snapshot under the target path 'backup'"),
    ("an incremental from elsewhere", mk.substream(f"pool/a@{OURS2}", fromguid=4000), TARGET,
     "an incremental stream from guid 4000, which is not a snapshot or bookmark of 'backup/pool/a'"),
    ("a snapshot not ours", mk.substream("pool/a@manual"), TARGET,
     "snapshot 'pool/a@manual' is not one of ours"),
    ("another dataset's name", mk.substream(f"pool/x@{OURS}"), TARGET,
     f"'pool/x@{OURS}' is not sent to 'backup/pool/a'"),
    ("holds (-h)", mk.substream(f"pool/a@{OURS}", features=ss.FEATURE_HOLDS), TARGET,
     "a stream with holds (zfs send -h): zfs-reconcile never sends one"),
    ("deduplicated", mk.substream(f"pool/a@{OURS}", features=ss.FEATURE_DEDUP), TARGET,
     "a deduplicated stream"),
    ("redacted", mk.substream(f"pool/a@{OURS}", features=ss.FEATURE_REDACTED), TARGET,
     "a redacted stream"),
    ("a dot name", mk.substream(f"pool/..@{OURS}"), TARGET, "is not a snapshot name"),
    ("not a stream", b"#!/bin/sh\n" * 40, TARGET, "no zfs send stream"),
    ("a package in a package", mk.package(mk.package(FULL)), TARGET,
     "a package inside a package"),
    ("a package's header without its END", mk.begin(f"pool/a@{OURS}", header=ss.COMPOUND,
     payload=mk.nvlist("not_recursive")) + FULL, TARGET, "a package header without its END record"),
    ("a -R header hidden by a pair's size", _hidden_recursive(), TARGET,
     "the nvlist pair 'x' is not the size it says"),
    ("an unknown header pair", mk.package(FULL, strings=(("origin", "x"),)), TARGET,
     "a package header with 'origin', which zfs send never writes"),
    ("holds on the package header", mk.package(FULL, features=ss.FEATURE_HOLDS), TARGET,
     "a stream with holds (zfs send -h)"),
    ("a snapshot the target has (zfs would skip it unread)",
     mk.substream(f"pool/a@{OURS}", toguid=1001), TARGET,
     "snapshot guid 1001 is on 'backup/pool/a' already"),
    ("a header payload where zfs writes none", mk.substream(f"pool/a@{OURS}", payload=b"\0" * 64),
     TARGET, "a substream header with a payload"),
    ("a name without its end", mk.begin("pool/a@" + "b" * 300), TARGET, "whose name has no end"),
    ("no parent (zfs would look for one by guid)", mk.substream(f"pool/a/b@{OURS}"),
     "backup/pool/a/b", "the parent of 'backup/pool/a/b' does not exist"),
    ("a native nvlist", mk.begin(f"pool/a@{OURS}", header=ss.COMPOUND, payload=b"\0" * 40) + mk.end() + FULL,
     TARGET, "a BEGIN payload that is not an XDR nvlist"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "dataset", "reason"), FORGED, ids=[f[0] for f in FORGED])
def test_a_forged_first_substream_never_reaches_zfs(
    name: str, data: bytes, dataset: str, reason: str
) -> None:
    message, memory = _refused(data, dataset=dataset)
    assert reason in message and message.startswith("the stream: ")
    assert not memory.started and not memory.output


#: refused at a later substream of a package: zfs recv gets what came before it only
LATER = [
    ("a child dataset in a -p package", mk.package(INCREMENTAL, mk.substream(f"pool/a/child@{OURS3}")),
     f"'pool/a/child@{OURS3}' is not sent to 'backup/pool/a'"),
    ("another dataset in a -p package", mk.package(INCREMENTAL, mk.substream(f"other/pool/a@{OURS3}")),
     f"'other/pool/a@{OURS3}' in a stream of 'pool/a' would create another dataset"),
    ("a clone after the first", mk.package(INCREMENTAL, mk.substream(f"pool/a@{OURS3}", fromguid=3000,
     flags=ss.FLAG_CLONE)), "a clone of snapshot guid 3000"),
    ("a broken chain", mk.package(INCREMENTAL, mk.substream(f"pool/a@{OURS3}", fromguid=1001)),
     "an incremental stream that does not follow the one before"),
    ("a full after the first", mk.package(INCREMENTAL, mk.substream(f"pool/a@{OURS3}")),
     "a full stream after the first in a package"),
    ("not ours later", mk.package(INCREMENTAL, mk.substream("pool/a@manual", fromguid=1002)),
     "snapshot 'pool/a@manual' is not one of ours"),
    ("a BEGIN inside a substream", mk.package(INCREMENTAL[:-ss.RECORD] + THEN),
     "a BEGIN record inside a substream"),
    ("garbage between substreams", mk.package(INCREMENTAL, mk.write(b"x" * 8)),
     "a record between two substreams"),
    ("a block larger than any (zfs recv would overflow what it skips into)",
     mk.package(INCREMENTAL[:-ss.RECORD] + mk.write(b"x" * 8, size=20 << 20) + mk.end()),
     "a record of type 3 with a payload of 20971520 bytes"),
    ("a snapshot twice in one package", mk.package(INCREMENTAL, mk.substream(f"pool/a@{OURS3}",
     toguid=1002, fromguid=1002)), "snapshot guid 1002 is on 'backup/pool/a' already"),
    ("an unknown record", mk.package(INCREMENTAL[:-ss.RECORD] + b"\x63" + b"\0" * 311 + mk.end()),
     "an unknown record type 99"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "reason"), LATER, ids=[x[0] for x in LATER])
def test_a_forged_later_substream_is_cut_before_it(name: str, data: bytes, reason: str) -> None:
    message, memory = _refused(data)
    assert reason in message
    assert memory.started
    first = len(mk.package(INCREMENTAL)) - ss.RECORD  # (the package without its end)
    assert bytes(memory.output) == data[: len(memory.output)]
    assert len(memory.output) >= ss.RECORD * 2 and len(memory.output) <= first


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"", "the stream is empty (the sending side sent nothing)"),
        (FULL[:100], "the stream ends inside its first record"),
        (mk.package(INCREMENTAL)[:900], "the stream ends inside the first substream"),
    ],
)
def test_a_stream_that_ends_before_zfs_starts_is_not_a_refusal(data: bytes, said: str) -> None:
    memory = Memory(data)
    with pytest.raises(guard_stream.Incomplete) as incomplete:
        guard_stream.walk(memory, _receive("--target-path", "backup"))
    assert str(incomplete.value) == said and not memory.started


def test_a_stream_cut_short_goes_on_to_zfs_which_says_so() -> None:
    data = mk.package(INCREMENTAL)
    for cut in (len(data) - 5, len(data) - ss.RECORD - 100, len(data) - 3 * ss.RECORD):
        memory = _walk(data[:cut])
        assert bytes(memory.output) == data[:cut]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(0, len(FULL) - 1))
def test_any_bytes_are_passed_or_refused_never_a_crash(noise: bytes, at: int) -> None:
    """(The reader's only failure is Refused: noise spliced into a real stream.)"""
    for data in (noise, FULL[:at] + noise, mk.package(INCREMENTAL)[:at] + noise):
        memory = Memory(data)
        outcome: Optional[str] = None
        try:
            guard_stream.walk(memory, _receive("--target-path", "backup"))
        except Refused as exc:
            outcome = exc.message
        except guard_stream.Incomplete:
            outcome = "the stream: (ended)"
        assert outcome is None or outcome.startswith("the stream: ")
        assert bytes(memory.output) == data[: len(memory.output)]


def _many_records() -> bytes:
    """-I with -p of two substreams of many 128 KiB and 1 MiB writes (more than the pipes
    hold), as the guard's inner loop sees a large receive."""
    rng = random.Random(31)

    def records(count: int, size: int) -> bytes:
        return b"".join(mk.write(rng.randbytes(size)) for _ in range(count))

    first = mk.begin(f"pool/a@{OURS2}", toguid=1002, fromguid=1001) + records(20, 128 << 10)
    then = mk.begin(f"pool/a@{OURS3}", toguid=1003, fromguid=1002) + records(3, 1 << 20)
    return mk.package(first + mk.free() + mk.end(), then + mk.end())


@pytest.mark.parametrize("block", [7777, 1 << 20], ids=["small-reads", "1MiB-reads"])
@pytest.mark.parametrize(
    ("name", "data", "options", "dataset"),
    [*PASSING, ("-I with -p, many records", _many_records(), (), TARGET)],
    ids=[*(p[0] for p in PASSING), "many records"],
)
def test_through_real_pipes_every_stream_arrives_byte_for_byte(
    tmp_path: Path, block: int, name: str, data: bytes, options: tuple[str, ...], dataset: str
) -> None:
    """guard_receive's pipes (splice, and its one-call paths for a record) with a sender
    whose writes split records anywhere (dd's blocks), into a `zfs recv` that keeps what
    it reads."""
    stream, received = tmp_path / "stream", tmp_path / "received"
    stream.write_bytes(data)
    sink = tmp_path / "zfs"
    sink.write_text(f"#!/bin/sh\nexec cat > {received}\n")
    sink.chmod(0o755)
    stages = [("dd", f"if={stream}", f"bs={block}", "status=none"), ("zfs", "recv", dataset)]
    programs = [shutil.which("dd") or "/bin/dd", str(sink)]
    refusals: list[Refused] = []
    receive = _receive(*(options or ("--target-path", "backup")), dataset=dataset)
    code = guard_receive.run(stages, programs, receive, dict(os.environ), refusals.append)
    assert (code, refusals) == (0, [])
    assert received.read_bytes() == data
