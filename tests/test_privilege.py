"""Least privilege without ZFS: what each command needs, zfs' "permission denied" texts
(as measured on OpenZFS 2.3 in the guest), the error a missing delegation gives, and
--read-only-source. (Every mode as an unprivileged user is run on real ZFS in
tests/test_zfs_privilege.py.)"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Optional

import attrs
import pytest

from executors.classic import run_classic
from executors.console import Console
from executors.execute import Executor
from executors.options import build_parser, job_from_args
from executors.runner import PipelineResult, PipelineWatch, Result, Stage, shell_line
from executors.session import prepare
from planner import commands, invariants
from planner.actions import SOURCE, TARGET, CreateSnapshots, Hold
from planner.compile import Facts, Options, compile_plan
from reconcile import permissions, zfs_text
from reconcile.errors import PlanRefused, UsageError
from reconcile.guard_protocol import EXIT_REFUSED, READ_ONLY
from reconcile.guard_protocol import refusal as refusal_line
from reconcile.model import Host
from reconcile.permissions import Need
from tests.fakezfs import FakeRunner, FakeZfs

START = 1_767_225_600  # 2026-01-01 00:00 UTC


@pytest.mark.parametrize(
    ("command", "new", "argv", "expected"),
    [
        (commands.snapshot(["p/a", "p/b"], "s", []), False, "zfs snapshot p/a@s p/b@s",
         Need(("snapshot",), "p/a")),
        (commands.snapshot(["p/a"], "s", ["com.x:y=1"]), False,
         "zfs snapshot -o com.x:y=1 p/a@s", Need(("snapshot", "userprop"), "p/a")),
        (commands.destroy_snapshots(SOURCE, "p/a", ["s1", "s2"]), False,
         "zfs destroy p/a@s1,s2", Need(("destroy", "mount"), "p/a")),
        (commands.destroy_bookmark(SOURCE, "p/a", "s__1"), False, "zfs destroy p/a#s__1",
         Need(("destroy",), "p/a")),
        (commands.destroy_dataset(TARGET, "b/p/a"), False, "zfs destroy b/p/a",
         Need(("destroy", "mount"), "b/p/a")),
        (commands.hold(SOURCE, "zfs_autobackup:bk", ["p/a@s"]), False,
         "zfs hold zfs_autobackup:bk p/a@s", Need(("hold",), "p/a")),
        (commands.hold(SOURCE, "zfs_autobackup:bk", ["p@s"], release=True, recursive=True),
         False, "zfs release -r zfs_autobackup:bk p@s", Need(("release",), "p")),
        (commands.bookmark("p/a", "@s", "s__1"), False, "zfs bookmark p/a@s p/a#s__1",
         Need(("bookmark",), "p/a")),
        (commands.send(["zfs", "send", "-L", "-i", "@a", "p/a@b"], "p/a", several=False),
         False, "zfs send -L -i @a p/a@b", Need(("send",), "p/a")),
        (commands.send(["zfs", "send", "-L", "-I", "@a", "p/a@b"], "p/a", several=True),
         False, "zfs send -L -I @a p/a@b", Need(("send", "hold"), "p/a")),
        (commands.rollback("b/p/a", "s"), False, "zfs rollback b/p/a@s",
         Need(("rollback", "mount"), "b/p/a")),
        (commands.create_parent("b/p"), False, "zfs create -o canmount=off b/p",
         Need(("create", "mount", "canmount"), "b")),
        (commands.receive(["zfs", "recv", "-u", "-s", "-o", "canmount=noauto", "-o",
                           "com.x:y=1", "b/p/a"], "b/p/a", ["canmount=noauto", "com.x:y=1"]),
         True, "zfs recv -u -s -o canmount=noauto -o com.x:y=1 b/p/a",
         Need(("receive", "create", "mount", "canmount", "userprop"), "b/p")),
        (commands.receive(["zfs", "recv", "-u", "-s", "b/p/a"], "b/p/a", []), False,
         "zfs recv -u -s b/p/a", Need(("receive", "create", "mount"), "b/p/a")),
        (commands.abort_resume("b/p/a"), False, "zfs recv -A b/p/a",
         Need(("receive",), "b/p/a")),
        (commands.read(SOURCE, ["zfs", "list", "-H", "p"], "p"), False, "zfs list -H p", None),
        (commands.script(SOURCE, ["sh", "-c", "x"]), False, "sh -c x", None),
    ],
)  # fmt: skip
def test_what_each_command_needs(
    command: commands.Command, new: bool, argv: str, expected: Optional[Need]
) -> None:
    """Each verb's delegation is stated where its command is made (no argv is read back)."""
    assert " ".join(command.argv) == argv
    assert (command.need_new if new else command.need) == expected


def test_the_grant_line_quotes_what_it_must() -> None:
    grant = Need(("destroy", "mount"), "b/p q").grant("zb ackup")
    assert grant == "zfs allow -u 'zb ackup' destroy,mount 'b/p q'"


def test_the_default_sets() -> None:
    assert permissions.default_set("source") == (
        "send", "hold", "snapshot", "destroy", "mount", "bookmark",
    )  # fmt: skip
    assert permissions.default_set("target") == (
        "receive", "create", "mount", "userprop", "destroy", "hold", "release", "canmount",
    )  # fmt: skip


# what zfs 2.3.2 printed in the guest, as an unprivileged user without the delegation
MEASURED = [
    ("cannot create snapshots : permission denied\n", None, "create", False),
    ("cannot hold: permission denied\n", None, "hold", False),
    ("cannot release: permission denied\n", None, "release", False),
    ("cannot destroy snapshots: permission denied\n", None, "destroy", False),
    ("cannot create bookmark 'ps/a#bk-1__1': permission denied\n", "ps/a", "create", False),
    ("warning: cannot send 'ps/a@bk-1': permission denied\n", "ps/a", "send", False),
    ("cannot receive new filesystem stream: permission denied\n", None, "receive", True),
    ("cannot receive incremental stream: permission denied\n", None, "receive", False),
    ("cannot rollback 'pd/backup/a': permission denied\n", "pd/backup/a", "rollback", False),
    ("cannot create 'pd/backup/p': permission denied\n", "pd/backup/p", "create", False),
]


@pytest.mark.parametrize(("text", "dataset", "operation", "new"), MEASURED)
def test_zfs_permission_denied_texts(
    text: str, dataset: Optional[str], operation: str, new: bool
) -> None:
    (found,) = zfs_text.permission_denied(text)
    assert (found.dataset, found.operation, found.new_dataset) == (dataset, operation, new)
    assert isinstance(zfs_text.command_error("zfs x", 1, text), zfs_text.errors.PermissionDenied)


def test_received_properties_denied_and_ssh_logins_are_told_apart() -> None:
    text = (
        "cannot receive autobackup:bk property on pd/backup/a: permission denied\n"
        "cannot receive compression property on pd/backup/a: permission denied\n"
        "root@host: Permission denied (publickey).\n"
    )
    found = zfs_text.permission_denied(text)
    assert [(d.dataset, d.property) for d in found] == [
        ("pd/backup/a", "autobackup:bk"),
        ("pd/backup/a", "compression"),
    ]


# --- the executor's messages ---------------------------------------------------------


class DenyingRunner:
    """Answers every command; the ones containing a key of `deny` fail with its stderr
    (exit 1, or 126 for a guard's refusal line, as the guard exits; `code` if given);
    pipelines get `recv_stderr` on success (zfs recv's property warnings)."""

    def __init__(
        self, deny: dict[str, str], recv_stderr: str = "", code: Optional[int] = None
    ) -> None:
        self.deny = deny
        self.recv_stderr = recv_stderr
        self.code = code
        self.lines: list[str] = []

    def _check(self, line: str, check: bool) -> int:
        self.lines.append(line)
        for key, stderr in self.deny.items():
            if key in line:
                refused = stderr.startswith("zfs-autobackup-guard: refused")
                code = self.code if self.code is not None else EXIT_REFUSED if refused else 1
                if check:
                    raise zfs_text.command_error(line, code, stderr)
                return code
        return 0

    def run(
        self, host: Host, argv: Sequence[str], *, label: str = "",
        input: Optional[str] = None, check: bool = True,
    ) -> Result:  # fmt: skip
        line = shell_line([Stage(host, tuple(argv))])
        return Result(line, self._check(line, check), "", "")

    def pipeline(
        self, stages: Sequence[Stage], *, check: bool = True, watch: Optional[PipelineWatch] = None
    ) -> PipelineResult:
        line = shell_line(stages)
        code = self._check(line, check)
        return PipelineResult(line, (0, code), ("", self.recv_stderr), "")


def _world(selected: str = "src") -> tuple[FakeZfs, FakeRunner]:
    zfs = FakeZfs()
    for name in ("src", "src/a", "src/b", "dst"):
        zfs.create(name)
    zfs.datasets[selected].local_props["autobackup:bk"] = "true"
    zfs.now = START
    return zfs, FakeRunner({None: zfs, "zbsource@host": zfs, "zbtarget@host": zfs})


def _execute(
    runner: DenyingRunner, *args: str, selected: str = "src", snapshots: Sequence[str] = ()
) -> str:
    """Plan a first run of src/{a,b} (with `snapshots` of each) against the fake zfs,
    execute it with `runner`."""
    zfs, fake = _world(selected)
    for snap in snapshots:
        zfs.command(["zfs", "snapshot", f"src@{snap}", f"src/a@{snap}", f"src/b@{snap}"])
    job = job_from_args(build_parser().parse_args(["bk", "dst", *args]))
    plan = prepare(job, fake, float(zfs.now + 3600), Options()).plan
    console = Console(out=io.StringIO(), err=io.StringIO(), verbose=True, color=False)
    compiled = compile_plan(
        plan, job.transfer_recipe, job.snapshotting, Facts(), Options(parallel=1)
    )
    Executor(job, runner, console).execute(compiled, failed=[p.unit for p in plan.problems])
    return console.out.getvalue() + console.err.getvalue()  # type: ignore[attr-defined]


def test_a_missing_delegation_names_dataset_permission_and_grant() -> None:
    denied = "warning: cannot send 'src/a@bk-20260101010000': permission denied\n"
    runner = DenyingRunner({"zfs send -p src/a@": denied})
    out = _execute(runner, "--ssh-source", "zbsource@host")
    (line,) = [line for line in out.splitlines() if "FAILED" in line]
    assert line == (
        "! [Target] dst/src/a: FAILED: permission denied: zfs send needs the delegated "
        "permission send on src/a (grant it: zfs allow -u zbsource send src/a)"
    )
    # the other datasets went on
    assert any(
        "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by dst/src/b"
        in cmd
        for cmd in runner.lines
    )


def test_a_read_only_guards_refusal_suggests_read_only_source() -> None:
    """Pulling through `zfs-autobackup-guard --read-only` without --read-only-source: the
    writes on the source are refused, and the line says which option fits."""
    # (the line a read-only guard prints: reconcile.guard_protocol, as tests/test_guard.py runs it)
    refusal = (
        refusal_line(f"zfs bookmark: {READ_ONLY}", "zfs bookmark src/a@x src/a#x", read_only=True)
        + "\n"
    )
    runner = DenyingRunner({"zfs bookmark src/a@": refusal})
    out = _execute(runner, "--ssh-source", "zbsource@host")
    (line,) = [line for line in out.splitlines() if "zfs bookmark: the guard" in line]
    assert line.endswith(
        "(the source's key is pinned to zfs-autobackup-guard --read-only: pull with "
        "--read-only-source)"
    ), line
    # a target guard's refusal is not the source's
    refusal = refusal.replace("bookmark src/a@x src/a#x", "hold zfs_autobackup:bk dst/src/a@x")
    out = _execute(DenyingRunner({"zfs hold zfs_autobackup:bk dst/": refusal}))
    assert "the guard is --read-only" in out and "--read-only-source)" not in out
    # nor is a target guard's refusal of a receive, in a send step that starts on the source
    recv = (
        "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by dst/src/a"
    )
    refusal = refusal_line(f"zfs recv: {READ_ONLY}", recv, read_only=True) + "\n"
    runner = DenyingRunner(
        {
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by dst/src/a": refusal
        }
    )
    out = _execute(runner, "--ssh-source", "zbsource@host", "--ssh-target", "zbtarget@host")
    assert "zfs recv: the guard is --read-only" in out and "--read-only-source)" not in out
    # a refusal is the guard's exit code and its line: the same words from a command that
    # exited 1 (a pipe's program, say) are not the guard's
    refusal = refusal.replace("zfs recv", "zfs bookmark")
    runner = DenyingRunner({"zfs bookmark src/a@": refusal}, code=1)
    out = _execute(runner, "--ssh-source", "zbsource@host")
    assert "zfs bookmark: the guard is --read-only" in out and "--read-only-source)" not in out


def test_a_new_filesystems_receive_is_granted_on_the_parent() -> None:
    runner = DenyingRunner(
        {
            "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by dst/src/b": "cannot receive new filesystem stream: permission denied\n"
        }
    )
    out = _execute(runner, "--ssh-target", "zbtarget@host")
    (line,) = [line for line in out.splitlines() if "FAILED" in line]
    assert line.startswith("! [Target] dst/src/b: FAILED: permission denied: zfs recv needs")
    assert "receive,create,mount on dst/src (grant it: zfs allow -u zbtarget" in line
    # the other datasets went on
    assert any(
        "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by dst/src/a"
        in cmd
        for cmd in runner.lines
    )


def test_a_parent_that_may_not_be_created_is_granted_on_its_parent() -> None:
    denied = "cannot create 'dst/src': permission denied\n"
    runner = DenyingRunner({"zfs create": denied})
    out = _execute(runner, "--ssh-target", "zbtarget@host", selected="src/a")
    lines = [line for line in out.splitlines() if "FAILED" in line]
    assert lines[0] == (
        "! [Target] dst/src: FAILED: permission denied: zfs create needs the delegated "
        "permission create,mount,canmount on dst (grant it: zfs allow -u zbtarget "
        "create,mount,canmount dst)"
    )


def test_a_thinning_destroy_that_is_denied_names_its_grant_and_blocks_nothing() -> None:
    denied = "cannot destroy snapshots: permission denied\n"
    old = ["bk-20250101000000", "bk-20250102000000"]
    runner = DenyingRunner({"zfs destroy src/a@": denied})
    out = _execute(runner, "--ssh-source", "zbsource@host", "--keep-source=1", snapshots=old)
    assert "FAILED" not in out
    assert (
        f"[Source] src/a@{old[0]}: can't destroy it (permission denied: zfs destroy needs the "
        "delegated permission destroy,mount on src/a (grant it: zfs allow -u zbsource "
        "destroy,mount src/a)); the backup goes on"
    ) in out
    assert any(
        "zfs recv -u -x org.openzfs.systemd:wanted-by -x org.openzfs.systemd:required-by dst/src/a"
        in cmd
        for cmd in runner.lines
    )


def test_properties_a_receive_could_not_set_are_warned_about() -> None:
    warning = "cannot receive autobackup:bk property on dst/src/a: permission denied\n"
    out = _execute(DenyingRunner({}, recv_stderr=warning), "--ssh-target", "zbtarget@host")
    assert (
        "[Target] dst/src/a: property autobackup:bk not received (permission denied; "
        "zfs allow -u zbtarget userprop dst/src/a)"
    ) in out
    assert "FAILED" not in out


# --- --read-only-source --------------------------------------------------------------


def test_a_read_only_source_is_never_changed() -> None:
    zfs, runner = _world()
    zfs.command(["zfs", "snapshot", "src@bk-20260101000000", "src/a@bk-20260101000000",
                 "src/b@bk-20260101000000"])  # fmt: skip
    before = {n: [s.name for s in d.snaps] for n, d in zfs.datasets.items()}
    args = ["bk", "dst", "--ssh-source", "zbsource@host", "--read-only-source", "--keep-source=0"]
    job = job_from_args(build_parser().parse_args(args))
    console = Console(out=io.StringIO(), err=io.StringIO(), verbose=True, color=False)
    assert run_classic(job, False, console, runner, float(zfs.now + 3600)) == 0
    out = console.out.getvalue()  # type: ignore[attr-defined]
    assert "[Source] Read-only (--read-only-source)" in out
    for name in ("src", "src/a", "src/b"):
        snaps = zfs.datasets[name].snaps
        assert [s.name for s in snaps] == before[name]
        assert not any(s.holds for s in snaps) and not zfs.datasets[name].bookmarks
        assert [s.name for s in zfs.datasets[f"dst/{name}"].snaps] == before[name]
    # the target side is as usual: held
    assert zfs.datasets["dst/src/a"].snaps[-1].holds


def test_the_checker_refuses_a_plan_that_changes_a_read_only_source() -> None:
    zfs, runner = _world()
    job = job_from_args(build_parser().parse_args(["bk", "dst"]))
    prepared = prepare(job, runner, float(zfs.now + 3600), Options())
    plan = prepared.plan
    assert any(isinstance(a, CreateSnapshots) for a in plan.actions)
    read_only = attrs.evolve(job, transfer=attrs.evolve(job.transfer, read_only_source=True))
    with pytest.raises(PlanRefused, match="changes the read-only source: snapshot"):
        invariants.check(plan, read_only, prepared.desired)
    hold = Hold(SOURCE, "src/a", "x", "zfs_autobackup:bk", "src/a")
    only_hold = attrs.evolve(plan, actions=(hold,), depends=((),))
    with pytest.raises(PlanRefused, match="read-only source: hold"):
        invariants.check(only_hold, read_only, prepared.desired)


def test_read_only_source_and_orphan_bookmark_destroys_do_not_mix() -> None:
    args = ["bk", "dst", "--read-only-source", "--destroy-orphan-bookmarks", "30d"]
    with pytest.raises(UsageError, match="not with --read-only-source"):
        job_from_args(build_parser().parse_args(args))


def test_the_security_page_lists_the_permission_table() -> None:
    """docs/security.md shows reconcile/permissions.py's FEATURES, row for row."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    start = page.index("<!-- permissions table")
    block = page[start : page.index("<!-- end of the generated table -->")]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    assert rows == permissions.table().splitlines()
    assert len(rows) == len(permissions.FEATURES) + 2
    defaults = page[page.index("A run with the default options") :]
    source, target = defaults.split("\n\n", 2)[1].strip().splitlines()
    assert source.split()[4] == ",".join(permissions.default_set("source"))
    assert target.split()[4] == ",".join(permissions.default_set("target"))
    # every setup's grants: the default sets (send,hold alone for a read-only source)
    grants = re.findall(r"^ +zfs allow -u \S+ (\S+) (\S+)$", page, re.MULTILINE)
    on = {"POOL": "source", "rpool": "source", "TARGET-PATH": "target", "backup/server1": "target"}
    assert len(grants) == 7
    assert [perms for perms, _ in grants].count("send,hold") == 1  # (the read-only source)
    for perms, dataset in grants:
        allowed = {",".join(permissions.default_set(on[dataset]))}
        assert perms in (allowed | {"send,hold"} if on[dataset] == "source" else allowed)
