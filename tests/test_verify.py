"""verify (#35) without ZFS: the walker on real local files, the comparison both ways,
which snapshots are compared, the runner's allow-list, and the mode over the fake zfs
with snapshots "mounted" as local directories (so that the undoing on every way out is
tested where failures can be injected at each command).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pytest

from executors import cli
from executors.console import Console
from executors.modes import Mode
from executors.options import build_parser, run_options
from executors.runner import (
    LocalRunner,
    PipelineResult,
    PipelineWatch,
    ReadOnlyRunner,
    Result,
    Stage,
    is_read_only,
)
from planner import verify as commands
from reconcile import verify
from reconcile.errors import ReconcileError
from reconcile.model import Bookmark, Dataset, Host, Snapshot
from tests import fakecli
from tests.fakezfs import FakeRunner, FakeZfs

MIB = 1 << 20


def walk(root: Path, *options: str) -> verify.Walked:
    """The walker as verify runs it: `python3 -c SOURCE ... ROOT`, in a folder where
    nothing of this project can be imported (it needs nothing but the standard library)."""
    argv = [
        sys.executable,
        "-S",
        "-c",
        commands.WALK_SOURCE,
        *options,
        str(root),
    ]  # (-S: no site-packages)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd="/",
                         env={"PATH": os.environ.get("PATH", "")}, errors="surrogateescape")  # fmt: skip
    return verify.parse_walk(out.stdout)


def tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a").write_text("one\n")
    (root / "same").write_text("three\n")
    (root / "same").chmod(0o600)
    (root / "link").symlink_to("sub/a")
    with (root / "sparse").open("wb") as f:
        f.truncate(64 * MIB)
        f.seek(40 * MIB + 5)
        f.write(b"tail")
    for path in (root / "sub" / "a", root / "same", root / "link", root / "sparse", root / "sub"):
        os.utime(
            path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000), follow_symlinks=False
        )
    return root


def copy_of(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", "--sparse=never", f"{source}/.", str(target)], check=True)
    return target


def differences(a: Path, b: Path) -> dict[str, str]:
    return {d.path: d.what for d in verify.compare(walk(a), walk(b)).differences}


# --- the walker ----------------------------------------------------------------------


def test_a_copy_matches_however_its_zeros_are_stored_and_holes_are_not_read(tmp_path: Path) -> None:
    source = tree(tmp_path / "a")
    target = copy_of(source, tmp_path / "b")  # (the sparse file written dense)
    assert (target / "sparse").stat().st_blocks * 512 >= 64 * MIB
    sparse, dense = walk(source), walk(target)
    assert verify.compare(sparse, dense).differences == ()
    assert sparse.entries["sparse"][-2] == dense.entries["sparse"][-2]
    # the sparse side read one chunk of the 64 (the one with data), the dense all of them
    assert sparse.read <= 2 * MIB < 64 * MIB <= dense.read
    assert sparse.skipped >= 62 * MIB
    assert sorted(sparse.entries) == [".", "link", "same", "sparse", "sub", "sub/a"]


def test_every_kind_of_change_is_named_both_ways(tmp_path: Path) -> None:
    source = tree(tmp_path / "a")
    target = copy_of(source, tmp_path / "b")
    (target / "same").chmod(0o644)
    os.setxattr(target / "sub" / "a", "user.note", b"x") if hasattr(os, "setxattr") else None
    (target / "link").unlink()
    (target / "link").symlink_to("same")
    os.utime(target / "link", ns=(1_700_000_000_000_000_000,) * 2, follow_symlinks=False)
    with (target / "sparse").open("r+b") as f:
        f.seek(10 * MIB)
        f.write(b"\1")
    os.utime(target / "sparse", ns=(1_700_000_000_000_000_000,) * 2)
    (target / "extra").write_text("new\n")
    (source / "gone").write_text("old\n")
    found = differences(source, target)
    assert found.pop("extra") == "only on target"
    assert found.pop("gone") == "only on source"
    assert found.pop("same") == "mode"
    assert found.pop("link") == "size, link"  # ("sub/a" -> "same": its length too)
    assert found.pop("sparse") == "contents"
    assert found.pop(".") == "mtime"
    if found:  # (where the file system takes user xattrs)
        assert found == {"sub/a": "xattrs"}
    # the other way round: the same paths, sides swapped
    back = differences(target, source)
    assert back["extra"] == "only on source" and back["gone"] == "only on target"


def test_a_type_change_and_a_content_change_of_the_same_size(tmp_path: Path) -> None:
    source = tree(tmp_path / "a")
    target = copy_of(source, tmp_path / "b")
    (target / "same").unlink()
    (target / "same").mkdir()
    (target / "same").chmod(0o600)
    (target / "sub" / "a").write_text("two\n")  # (as long as "one\n")
    os.utime(target / "sub" / "a", ns=(1_700_000_000_000_000_000,) * 2)
    os.utime(target / "sub", ns=(1_700_000_000_000_000_000,) * 2)
    found = differences(source, target)
    assert found["sub/a"] == "contents"
    assert found["same"].startswith("kind")


def test_an_unreadable_file_is_a_difference_never_a_match(tmp_path: Path) -> None:
    source = tree(tmp_path / "a")
    target = copy_of(source, tmp_path / "b")
    walked = walk(target)
    entries = dict(walked.entries)
    record = list(entries["same"])
    record[-2], record[-1] = None, "EIO: Input/output error"
    entries["same"] = tuple(record)
    broken = verify.Walked(entries, walked.order)
    found = {d.path: d.what for d in verify.compare(walk(source), broken).differences}
    assert found == {"same": "unreadable on target: EIO: Input/output error"}


def test_a_name_no_encoding_can_read_is_walked_and_compared(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.mkdir()
    (source / os.fsdecode(b"caf\xe9\nnew\tline")).write_text("x")
    target = copy_of(source, tmp_path / "b")
    assert differences(source, target) == {}
    os.utime(source, ns=(1, 1))
    assert differences(source, target) == {".": "mtime"}


def test_a_sample_is_the_same_on_both_sides_and_the_slices_cover_every_chunk(
    tmp_path: Path,
) -> None:
    source = tmp_path / "a"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(16 * MIB))
    target = copy_of(source, tmp_path / "b")
    chosen = []
    # --sample 0.25 on four consecutive days: the four slices
    slices = [verify.sample_slices(0.25, fakecli.START + day * 86400) for day in range(4)]
    assert sorted(k for _, k in slices) == [0, 1, 2, 3] and {n for n, _ in slices} == {4}
    for buckets, index in slices:
        options = ("--sample", str(buckets), "--slice", str(index))
        a, b = walk(source, *options), walk(target, *options)
        assert verify.compare(a, b).differences == ()
        assert a.read == b.read < 16 * MIB
        chosen.append(a.read // MIB)
    # every chunk once
    assert sum(chosen) == 16
    # a change in a chunk the day's slice reads is found
    with (target / "big").open("r+b") as f:
        for chunk in range(16):
            f.seek(chunk * MIB)
            f.write(b"\0")
    os.utime(target / "big", ns=((source / "big").stat().st_mtime_ns,) * 2)
    options = ("--sample", "4", "--slice", "2")
    found = verify.compare(walk(source, *options), walk(target, *options))
    assert [d.what for d in found.differences] == ["contents"]


@pytest.mark.parametrize(
    ("fraction", "buckets"), [(1.0, 1), (0.5, 2), (0.1, 10), (0.3, 3), (0.001, 1000)]
)
def test_a_fraction_is_a_whole_number_of_slices(fraction: float, buckets: int) -> None:
    days = {verify.sample_slices(fraction, fakecli.START + d * 86400) for d in range(buckets)}
    assert days == {(buckets, k) for k in range(buckets)}


def test_a_tree_deeper_than_a_path_can_be_long_is_walked(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.mkdir()
    os.chdir(source)
    try:
        for _ in range(1100):  # (5 bytes a level: 5,500 bytes, past PATH_MAX's 4,096)
            Path("dddd").mkdir()
            os.chdir("dddd")
        Path("leaf").write_text("deep\n")
    finally:
        os.chdir(tmp_path)
    try:
        walked = walk(source)
        assert len(walked.entries) == 1102
        assert all(record[-1] is None for record in walked.entries.values())
        assert verify.compare(walked, walk(source)).differences == ()
    finally:
        # (pytest's clean-up of tmp_path recurses once a level: Python 3.11's limit)
        subprocess.run(["rm", "-rf", str(source)], check=True)


def test_hard_links_are_compared(tmp_path: Path) -> None:
    linked, separate = tmp_path / "a", tmp_path / "b"
    for folder in (linked, separate):
        folder.mkdir()
        (folder / "a").write_text("same\n")
        os.utime(folder / "a", ns=(1, 1))
    (linked / "b").hardlink_to(linked / "a")
    (separate / "b").write_text("same\n")
    os.utime(separate / "b", ns=(1, 1))
    os.utime(linked, ns=(1, 1))
    os.utime(separate, ns=(1, 1))
    assert differences(linked, separate) == {"b": "link"}


def test_a_hole_at_the_end_of_the_last_partial_chunk_is_not_read(tmp_path: Path) -> None:
    with (tmp_path / "f").open("wb") as f:
        f.write(b"x" * 10)
        f.truncate(MIB + MIB // 2)
    walked = walk(tmp_path)
    assert walked.read == MIB and walked.skipped == MIB // 2


def test_a_budget_compares_only_what_both_walks_reached(tmp_path: Path) -> None:
    source = tree(tmp_path / "a")
    target = copy_of(source, tmp_path / "b")
    stopped = walk(target, "--budget", "0")
    assert stopped.stopped == () and stopped.entries == {}
    compared = verify.compare(walk(source), stopped)
    assert compared.differences == () and not compared.complete and compared.paths == 0


def test_a_budget_stops_inside_a_file_and_orders_names_as_the_walker_does(tmp_path: Path) -> None:
    """(A name that is not UTF-8 sorts by its bytes: before 'é' for the walker, after it
    as text; a stop between them must not make 'é' look like a path of one side only.)"""
    source = tmp_path / "a"
    source.mkdir()
    (source / "a_big").write_bytes(os.urandom(8 * MIB))
    (source / os.fsdecode(b"\x80")).write_text("x")
    (source / "é").write_text("y")
    target = copy_of(source, tmp_path / "b")
    whole = walk(target)
    found = dict(whole.entries)
    stopped = verify.Walked({p: r for p, r in found.items() if p in (".", "a_big")},
                            whole.order, stopped=verify._key([os.fsdecode(b"\x80")]))  # fmt: skip
    compared = verify.compare(stopped, whole)
    assert compared.differences == () and compared.paths == 2 and not compared.complete
    # and the walker looks at the budget between chunks: a file is not read to its end
    late = walk(source, "--budget", "0.000001")
    assert late.read < 8 * MIB


def test_a_volume_device_is_read_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 7)
    (tmp_path / "dev").write_bytes(data)
    walked = walk(tmp_path / "dev", "--device")
    assert list(walked.entries) == ["."]
    assert walked.read == len(data)


@pytest.mark.parametrize(
    "text",
    ["", '["x"]\n{"end": {"files": 0, "read": 0, "skipped": 0}}\n', '[".", "d"', "[1, 2]\n"],
)
def test_what_is_not_a_finished_walk_is_refused(text: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        verify.parse_walk(text)


# --- what is compared ------------------------------------------------------------------


def _snap(ds: str, name: str, guid: int, txg: int) -> Snapshot:
    return Snapshot(ds, name, guid, txg, txg)


def test_the_newest_common_snapshot_by_guid_or_by_name() -> None:
    src = Dataset(
        "p/a",
        "filesystem",
        1,
        snapshots=(_snap("p/a", "s1", 11, 1), _snap("p/a", "s2", 12, 2), _snap("p/a", "s3", 13, 3)),
    )
    dst = Dataset(
        "b/p/a",
        "filesystem",
        2,
        snapshots=(
            _snap("b/p/a", "s1", 11, 1),
            _snap("b/p/a", "s2", 12, 2),
            _snap("b/p/a", "s3", 99, 3),
        ),
    )
    assert verify.task(src, dst.name, dst).snapshots == (("s2", "s2"),)
    assert verify.task(src, dst.name, dst, guid_check=False).snapshots == (("s3", "s3"),)
    assert verify.task(src, dst.name, dst, all_common=True).snapshots == (
        ("s1", "s1"),
        ("s2", "s2"),
    )
    assert verify.task(src, dst.name, dst, snapshot="s1").snapshots == (("s1", "s1"),)
    assert "not a snapshot both sides have" in str(
        verify.task(src, dst.name, dst, snapshot="s3").why
    )
    assert verify.task(src, dst.name, None).why == "the target has no copy of it"
    lone = Dataset("b/p/a", "filesystem", 2, snapshots=(_snap("b/p/a", "x", 5, 1),))
    assert verify.task(src, dst.name, lone).why == "no snapshot in common (by guid)"


def test_a_locked_copy_is_checked_by_guid() -> None:
    src = Dataset("p/a", "filesystem", 1, snapshots=(_snap("p/a", "s2", 12, 2),),
                  bookmarks=(Bookmark("p/a", "s1", 11, 1, 1),))  # fmt: skip
    dst = Dataset("b/p/a", "filesystem", 2, encryption="aes-256-gcm",
                  snapshots=(_snap("b/p/a", "s1", 11, 1), _snap("b/p/a", "s2", 12, 2)))  # fmt: skip
    assert "each of its 2 snapshots is one of the source's" in verify.locked_why(src, dst)
    odd = Dataset("b/p/a", "filesystem", 2, snapshots=(_snap("b/p/a", "zz", 77, 3),))
    assert (
        "1 of its snapshots match no source snapshot or bookmark by guid: @zz"
        in verify.locked_why(src, odd)
    )


def test_exit_codes() -> None:
    def result(outcome: verify.Outcome) -> verify.Result:
        return verify.Result("a", "b", outcome, "")

    ok, bad, unknown = (result(o) for o in verify.Outcome)
    assert verify.exit_code([ok, ok]) == 0
    assert verify.exit_code([ok, unknown]) == 3
    assert verify.exit_code([unknown, bad, ok]) == 1


# --- the only writes: temporary ones -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["zfs", "hold", "zfs_autobackup:bak:verify", "p/a@s"], True),
        (["zfs", "release", "zfs_autobackup:bak:verify", "p/a@s"], True),
        (["zfs", "hold", "zfs_autobackup:bak", "p/a@s"], False),
        (["zfs", "release", "-r", "zfs_autobackup:bak:verify", "p/a@s"], False),
        (["mktemp", "-d", "-t", "zfs-autobackup-verify.XXXXXX"], True),
        (["mktemp", "-d", "/etc/x.XXXX"], False),
        (
            [
                "mount",
                "-t",
                "zfs",
                "-o",
                "ro,nodev,nosuid,noexec",
                "p/a@s",
                "/tmp/zfs-autobackup-verify.ab12cd",
            ],
            True,
        ),
        (
            [
                "mount",
                "-t",
                "zfs",
                "-o",
                "ro,nodev,nosuid,noexec",
                "p/a",
                "/tmp/zfs-autobackup-verify.ab12cd",
            ],
            False,
        ),
        (["mount", "-t", "zfs", "-o", "rw", "p/a@s", "/tmp/zfs-autobackup-verify.ab12cd"], False),
        (["mount", "-t", "zfs", "-o", "ro,nodev,nosuid,noexec", "p/a@s", "/etc"], False),
        (["umount", "/tmp/zfs-autobackup-verify.ab12cd"], True),
        (["umount", "/home"], False),
        (["rmdir", "/tmp/zfs-autobackup-verify.ab12cd"], True),
        (["rmdir", "/home"], False),
        (["zfs", "set", "snapdev=visible", "p/vol"], True),
        (["zfs", "set", "mountpoint=/x", "p/vol"], False),
        (["zfs", "set", "snapdev=visible", "p"], False),
        (["zfs", "set", "snapdev=other", "p/vol"], False),
        (["zfs", "set", "autobackup:bak:verified=1765000000 @bak-1", "p/a"], True),
        # (a copy that is TARGET-PATH itself, a pool, with --strip-path)
        (["zfs", "set", "autobackup:bak:verified=1765000000 @bak-1", "dst"], True),
        (["zfs", "set", "autobackup:bak:verified=1765000000 @bak-1", "dst@s"], False),
        (["zfs", "set", "autobackup:bak:verified=yes", "p/a"], False),
        (
            [
                "mount",
                "-t",
                "zfs",
                "-o",
                "ro,nodev,nosuid,noexec",
                "-oremount,rw,x@y",
                "/tmp/zfs-autobackup-verify.ab12cd",
            ],
            False,
        ),
        (
            [
                "mount",
                "-t",
                "zfs",
                "-o",
                "ro,nodev,nosuid,noexec",
                "p/a@s",
                "/var/zfs-autobackup-verify.d",
            ],
            False,
        ),
        (["umount", "-l", "/tmp/zfs-autobackup-verify.ab12cd"], True),
        (["umount", "-l", "/"], False),
        (["rmdir", "/etc/zfs-autobackup-verify.d"], False),
        (["zfs", "hold", "zfs_autobackup:bak:verify", "-r"], False),
        (["zfs", "inherit", "snapdev", "p/vol"], True),
        (["zfs", "inherit", "-S", "snapdev", "p/vol"], True),
        (["zfs", "inherit", "-r", "snapdev", "p/vol"], False),
        (["zfs", "inherit", "mountpoint", "p/vol"], False),
        (["zfs", "destroy", "p/a@s"], False),
        (["python3", "-c", commands.WALK_SOURCE, "/tmp/zfs-autobackup-verify.ab12cd"], True),
        (["python3", "-c", "import os; os.remove('/x')"], False),
    ],
)
def test_the_verify_runner_lets_through_only_its_temporary_writes(
    argv: list[str], allowed: bool
) -> None:
    assert commands.is_temporary(argv) is allowed


def test_the_verify_mode_gets_a_runner_that_refuses_other_writes() -> None:
    options = run_options(Mode.VERIFY, build_parser(Mode.VERIFY).parse_args(["bak", "dst"]))
    runner = cli.make_runner(options, Console(), "/nonexistent")
    assert isinstance(runner, ReadOnlyRunner)
    # (refused with an error, not pretended done: verify goes on from what its writes did)
    with pytest.raises(ReconcileError, match=r"Refused .*: zfs destroy p/a@s"):
        runner.run(Host(), ["zfs", "destroy", "p/a@s"])
    with pytest.raises(ReconcileError, match="Refused"):
        runner.pipeline([Stage(Host(), ("mount", "/dev/sda1", "/mnt"))])
    assert runner.swallowed == []
    assert isinstance(runner._inner, LocalRunner)


# --- the mode, over the fake zfs: snapshots mounted as local folders --------------------


class Mounts:
    """A runner for verify over the fake zfs: mktemp, mount, umount, rmdir and the walker
    run for real on local folders; a snapshot "mounted" is the folder `content[name]`.
    `fail`: the first command whose line starts with it fails."""

    def __init__(self, fake: FakeRunner, tmp: Path, content: dict[str, Path]) -> None:
        self.fake = fake
        self.tmp = tmp
        self.content = content
        self.mounts: dict[str, str] = {}
        self.made: list[str] = []
        self.count = 0
        self.fail: Optional[str] = None
        self.history: list[str] = []

    def _failing(self, line: str) -> bool:
        if self.fail is not None and line.startswith(self.fail):
            self.fail = None
            return True
        return False

    def run(self, host: Host, argv: Sequence[str], *, label: str = "",
            input: Optional[str] = None, check: bool = True) -> Result:  # fmt: skip
        line = shlex.join(argv)
        self.history.append(line)
        # (the verify mode's runner: what it does not allow is refused, as for real)
        if not (is_read_only(argv) or commands.is_temporary(argv)):
            raise ReconcileError(f"Refused: {line}")
        if self._failing(line):
            result = Result(line, 1, "", "injected failure")
            if check:
                raise ReconcileError(f"{line}: injected failure")
            return result
        if argv[0] == "zfs":
            return self.fake.run(host, argv, label=label, input=input, check=check)
        if argv[0] == "mktemp":
            self.count += 1
            path = self.tmp / f"{commands.PREFIX}{self.count:06d}"
            path.mkdir()
            self.made.append(str(path))
            return Result(line, 0, f"{path}\n", "")
        if argv[0] == "mount":
            self.mounts[argv[-1]] = argv[-2]
        elif argv[0] == "umount":
            del self.mounts[argv[1]]
        elif argv[0] == "rmdir":
            Path(argv[1]).rmdir()
            self.made.remove(argv[1])
        return Result(line, 0, "", "")

    def pipeline(self, stages: Sequence[Stage], *, check: bool = True,
                 watch: Optional[PipelineWatch] = None) -> PipelineResult:  # fmt: skip
        (stage,) = stages
        line = shlex.join(stage.argv)
        self.history.append("walk " + stage.argv[-1])
        folder = self.content.get(self.mounts[stage.argv[-1]])
        if self._failing("walk") or folder is None:
            return PipelineResult(line, (1,), ("Traceback: injected",), "")
        argv = [sys.executable, *stage.argv[1:-1], str(folder)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True)
        return PipelineResult(line, (0,), ("",), out.stdout)


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[FakeZfs, Mounts]:
    zfs, runner = fakecli.world()
    assert fakecli.run(["bak", "dst", "--no-progress"], runner) == 0
    content = {}
    for name in fakecli.SOURCES:
        for side in (name, f"dst/{name}"):
            (snap,) = zfs.datasets[side].snaps
            content[f"{side}@{snap.name}"] = tmp_path / "same"
    tree(tmp_path / "same")
    return zfs, Mounts(runner, tmp_path, content)


def _verify(mounts: Mounts, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    def make_runner(options: object, console: Console, control_dir: str) -> Mounts:
        return mounts

    deps = cli.Deps(clock=lambda: fakecli.START + 7200, runner=make_runner)  # type: ignore[arg-type]
    code = cli.main(["verify", "bak", "dst", "--parallel", "1", *args], deps)
    out, err = capsys.readouterr()
    return code, out + err


def _holds(zfs: FakeZfs) -> list[str]:
    return [f"{ds.name}@{s.name}:{t}" for ds in zfs.datasets.values() for s in ds.snaps
            for t in s.holds if t.endswith(":verify")]  # fmt: skip


def test_the_mode_verifies_and_undoes_everything(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str]
) -> None:
    zfs, mounts = backed_up
    code, out = _verify(mounts, "--json", capsys=capsys)
    assert code == 0, out
    results = json.loads(out)
    assert [r["outcome"] for r in results] == ["verified"] * len(fakecli.SOURCES)
    assert mounts.mounts == {} and mounts.made == [] and _holds(zfs) == []
    # each snapshot held while it was read, on both sides
    assert sum(
        line.startswith("zfs hold zfs_autobackup:bak:verify") for line in mounts.history
    ) == 2 * len(fakecli.SOURCES)


@pytest.mark.parametrize(
    "fail", ["zfs hold zfs", "mktemp", "mount", "walk", "zfs release", "umount"]
)
def test_a_failure_at_any_step_is_not_verifiable_and_undone(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str], fail: str
) -> None:
    zfs, mounts = backed_up
    mounts.fail = fail
    code, out = _verify(mounts, capsys=capsys)
    if fail == "umount":
        # (a walk killed a moment ago may still hold it busy: tried again, a second later)
        assert code == 0, out
        umounts = [line for line in mounts.history if line.startswith("umount")]
        assert len(umounts) == len(set(umounts)) + 1 and mounts.mounts == {}, out
        assert mounts.made == [] and _holds(zfs) == [], out
        return
    if fail == "zfs release":
        # (an undoing that fails is said, and the rest is still undone)
        assert code == 0, out
        assert "Left behind on the target: zfs release zfs_autobackup:bak:verify" in out, out
        assert len(_holds(zfs)) == 1 and mounts.mounts == {} and mounts.made == [], out
        return
    assert code == 3, out
    assert "not verifiable" in out, out
    assert mounts.mounts == {} and mounts.made == [] and _holds(zfs) == [], out


def test_a_different_snapshot_is_found(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    zfs, mounts = backed_up
    other = copy_of(tmp_path / "same", tmp_path / "other")
    (other / "sub" / "a").unlink()
    (snap,) = zfs.datasets["dst/src/data"].snaps
    mounts.content[f"dst/src/data@{snap.name}"] = other
    code, out = _verify(mounts, capsys=capsys)
    assert code == 1, out
    assert "DIFFERENT" in out and "sub/a: only on source" in out, out
    assert mounts.mounts == {} and mounts.made == [] and _holds(zfs) == []


def test_a_full_verification_is_recorded_for_status(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str]
) -> None:
    zfs, mounts = backed_up

    def status(now: float, *args: str) -> tuple[int, dict[str, object]]:
        deps = fakecli.deps(mounts.fake, now=now)
        code = cli.main(["status", "bak", "dst", "--format", "json", *args], deps)
        return code, json.loads(capsys.readouterr().out)

    day = 86400
    code, report = status(fakecli.START + 7200, "--verify-max-age", "7d")
    assert code == 1
    assert all("never verified" in r["reasons"] for r in report["datasets"])  # type: ignore[union-attr, index]
    # a sampled verification is no verification: not recorded
    assert _verify(mounts, "--sample", "0.5", capsys=capsys)[0] == 0
    assert "autobackup:bak:verified" not in zfs.datasets["dst/src/data"].local_props
    assert _verify(mounts, capsys=capsys)[0] == 0
    (snap,) = zfs.datasets["dst/src/data"].snaps
    record = zfs.datasets["dst/src/data"].local_props["autobackup:bak:verified"]
    assert record == f"{fakecli.START + 7200} @{snap.name}"
    # read by status only when asked (one more command), and rated
    code, report = status(
        fakecli.START + 7200 + day, "--verify-max-age", "7d", "--warn", "30d", "--crit", "60d"
    )
    assert code == 0, report
    rows = report["datasets"]
    assert {r["verified"]["snapshot"] for r in rows} == {snap.name}  # type: ignore[union-attr, index]
    code, report = status(
        fakecli.START + 7200 + 8 * day, "--verify-max-age", "7d", "--warn", "30d", "--crit", "60d"
    )
    assert code == 1
    assert all("last verified 8d 0h ago" in r["reasons"] for r in report["datasets"])  # type: ignore[union-attr, index]
    code, report = status(fakecli.START + 7200 + 8 * day, "--warn", "30d", "--crit", "60d")
    assert code == 0 and all(r["verified"] is None for r in report["datasets"])  # type: ignore[union-attr, index]


def test_status_says_where_a_verification_holds_a_snapshot(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str]
) -> None:
    zfs, mounts = backed_up
    (snap,) = zfs.datasets["dst/src/data"].snaps
    snap.holds.append("zfs_autobackup:bak:verify")  # (a verification killed with SIGKILL)
    deps = fakecli.deps(mounts.fake, now=fakecli.START + 7200)
    assert cli.main(["status", "bak", "dst"], deps) == 0
    out = capsys.readouterr().out
    assert f"held by verify (running, or left behind): dst/src/data@{snap.name}" in out, out


def test_progress_counts_the_bytes_read(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, mounts = backed_up
    code, out = _verify(mounts, "--progress", capsys=capsys)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line.startswith("verify: ")]
    # (one line per dataset done, at least; each says what was read, and at what rate)
    assert len(lines) >= len(fakecli.SOURCES), out
    assert "10.0 MiB" in lines[-1] and "/s" in lines[-1], lines
    assert any(
        line.startswith("zfs get -H -p -o name,value logicalreferenced") for line in mounts.history
    )


def test_a_walker_whose_reader_is_gone_stops(tmp_path: Path) -> None:
    """(verify stopped, or the ssh channel of a remote walk closed: the walk must not go
    on reading a snapshot verify is unmounting; exit 3 is the walker's own, before the
    next chunk, where a write would have failed later with a broken pipe, exit 1)"""
    (tmp_path / "big").write_bytes(os.urandom(64 * MIB))
    proc = subprocess.Popen([sys.executable, "-S", "-c", commands.WALK_SOURCE, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) == 3


def test_only_the_newest_common_snapshot_is_recorded_and_an_earlier_difference_stands(
    backed_up: tuple[FakeZfs, Mounts], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    zfs, mounts = backed_up
    first = zfs.datasets["src/data"].snaps[0].name
    zfs.write("src/data")
    assert (
        fakecli.main(
            ["bak", "dst", "--no-progress"], fakecli.deps(mounts.fake, now=fakecli.START + 5400)
        )
        == 0
    )
    second = zfs.datasets["src/data"].snaps[-1].name
    for name in fakecli.SOURCES:
        for side in (name, f"dst/{name}"):
            for snap in zfs.datasets[side].snaps:
                mounts.content.setdefault(f"{side}@{snap.name}", tmp_path / "same")
    # --snapshot of an older one verifies, but is no record of the backup's state
    code, out = _verify(mounts, "--snapshot", first, capsys=capsys)
    assert code == 0, out
    assert "autobackup:bak:verified" not in zfs.datasets["dst/src/data"].local_props
    # --all-common: the first pair differs, the second's walk fails: DIFFERENT, not "could not"
    other = copy_of(tmp_path / "same", tmp_path / "other")
    (other / "sub" / "a").unlink()
    mounts.content[f"dst/src/data@{first}"] = other
    del mounts.content[f"dst/src/data@{second}"]
    code, out = _verify(mounts, "--all-common", capsys=capsys)
    assert code == 1, out
    assert f"@{first} sub/a: only on source" in out and f"then @{second}:" in out, out


def test_xattrs_one_side_cannot_hold_are_a_difference_when_the_other_has_some() -> None:
    def walked(xattrs: Optional[str]) -> verify.Walked:
        record = ("f", 0o644, 0, 0, 1, 1, None, xattrs, "digest", None)
        return verify.Walked({"a": record}, {"a": (b"a",)})

    some = "0" * 64
    assert verify.compare(walked(verify.NO_XATTRS), walked(None)).differences == ()
    found = verify.compare(walked(some), walked(None)).differences
    assert [d.what for d in found] == ["xattrs (not supported on one side)"]


def test_status_verify_max_age_needs_a_target_path(capsys: pytest.CaptureFixture[str]) -> None:
    _zfs, runner = fakecli.world()
    assert cli.main(["status", "bak", "--verify-max-age", "7d"], fakecli.deps(runner)) == 3
    assert "--verify-max-age needs TARGET-PATH" in capsys.readouterr().err
    assert fakecli.writes(runner) == []


@pytest.mark.parametrize(
    ("value", "ok"), [("0.0001", False), ("0.001", True), ("1", True), ("0", False), ("nan", False)]
)
def test_sample_values(value: str, ok: bool, capsys: pytest.CaptureFixture[str]) -> None:
    _zfs, runner = fakecli.world()
    code = cli.main(["verify", "bak", "dst", "--sample", value], fakecli.deps(runner))
    err = capsys.readouterr().err
    assert ("invalid value" in err) is not ok and (code == 3 or ok), err
