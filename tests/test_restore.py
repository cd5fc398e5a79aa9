"""Restore, decided and planned (#34): which case applies, and the exact commands.

The drills on real ZFS (tests/test_zfs_restore.py) prove the outcome; these pin the
decisions and the commands for every case, refusals included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from executors import cli, lock
from executors.lock import backup_lock
from executors.options import build_parser, job_from_args
from executors.plankey import load_key
from planner.actions import SOURCE, TARGET, Hold, Mount, Release, Restore, Rollback, SetProperty
from planner.compile import Facts, Failure, Options, compile_plan
from planner.plan import Plan
from planner.planfile import loads
from planner.restore import build_restore_plan
from reconcile import zfs_text
from reconcile.errors import UsageError, ZfsError
from reconcile.job import Snapshotting
from reconcile.model import HostState
from reconcile.restore import Case, RestoreRequest, choose_snapshot, desire_restore
from tests import fakecli
from tests.builders import dataset, job, state

S1, S2, S3 = "bak-20260101120000", "bak-20260102120000", "bak-20260103120000"
JOB = job()
COPIES = state([
    dataset("backup/p/data", (S1, S2, S3), lineage="p/data", written=0),
    dataset("backup/p/data/child", (S1, S2, S3), lineage="p/data/child"),
])  # fmt: skip
RECEIVED = {"backup/p/data": "true"}


def plan_of(request: RestoreRequest, here: Optional[HostState]) -> Plan:
    return build_restore_plan(JOB, desire_restore(JOB, request, COPIES, here, RECEIVED))


def commands_of(plan: Plan) -> list[str]:
    compiled = compile_plan(plan, JOB.transfer_recipe, Snapshotting(), Facts(), Options())
    return [" | ".join(" ".join(c.argv) for c in step.commands) for step in compiled.steps]


def test_a_dataset_that_is_gone_comes_back_in_full_from_the_newest_snapshot() -> None:
    plan = plan_of(RestoreRequest("p/data"), None)
    assert not plan.problems
    assert [type(a) for a in plan.actions] == [Hold, Restore, SetProperty, Mount, Release]
    assert commands_of(plan) == [
        f"zfs hold zfs_autobackup:bak:restore backup/p/data@{S3}",
        f"zfs send -b backup/p/data@{S3} | zfs recv -u p/data",
        "zfs set autobackup:bak=true p/data",
        "sh -c " + commands_of(plan)[3].split("sh -c ", 1)[1],
        f"zfs release zfs_autobackup:bak:restore backup/p/data@{S3}",
    ]
    hold, restore, _, mount, release = plan.actions
    assert (hold.side, restore.side, mount.side, release.side) == (TARGET, SOURCE, SOURCE, TARGET)
    # (one snapshot's hold: no "if refused:" that runs the same command again)
    compiled = compile_plan(plan, JOB.transfer_recipe, Snapshotting(), Facts(), Options())
    assert [step.fallback for step in compiled.steps] == [()] * 5


def test_the_hold_is_released_whatever_failed_before() -> None:
    plan = plan_of(RestoreRequest("p/data"), None)
    compiled = compile_plan(plan, JOB.transfer_recipe, Snapshotting(), Facts(), Options())
    release = compiled.steps[-1]
    assert release.kind == "release"
    assert release.failure is Failure.ALWAYS and not release.blocked_by_units


def test_to_restores_beside_the_original_and_never_touches_it() -> None:
    here = state([dataset("p/new-parent")])
    plan = plan_of(RestoreRequest("p/data", snapshot=S1, to="p/copy"), here)
    assert not plan.problems
    lines = commands_of(plan)
    assert f"zfs send -b backup/p/data@{S1} | zfs recv -u p/copy" in lines
    assert not any(" p/data" in line and "backup/p/data" not in line for line in lines), lines


def test_an_existing_dataset_is_refused_without_force_and_says_what_force_destroys() -> None:
    here = state([dataset("p/data", (S1, "mine"), lineage="p/data", written=4096)])
    plan = plan_of(RestoreRequest("p/data", snapshot=S2), here)
    assert plan.actions == ()
    (problem,) = plan.problems
    assert "--force rolls it back to @" + S1 in problem.message
    assert "@mine" in problem.message and "4096 bytes" in problem.message


def test_force_receives_onto_the_common_snapshot_in_one_step() -> None:
    """zfs recv -F from an older snapshot destroys the later ones when the stream has
    arrived, atomically (a separate rollback first would lose them also when the send
    then fails: review of #34)."""
    here = state([dataset("p/data", (S1, "mine"), lineage="p/data", written=4096)])
    plan = plan_of(RestoreRequest("p/data", snapshot=S2, force=True), here)
    assert not plan.problems
    assert [type(a) for a in plan.actions] == [Hold, Restore, SetProperty, Release]
    lines = commands_of(plan)
    assert f"zfs send -b -i @{S1} backup/p/data@{S2} | zfs recv -u -F p/data" in lines
    assert not any("rollback" in line for line in lines)


def test_what_the_restore_destroys_and_this_backup_holds_is_released_first() -> None:
    held = {"mine": ("zfs_autobackup:bak",)}
    here = state([dataset("p/data", (S1, "mine"), lineage="p/data", holds=held)])
    plan = plan_of(RestoreRequest("p/data", snapshot=S2, force=True), here)
    assert [type(a) for a in plan.actions] == [Hold, Release, Restore, SetProperty, Release]
    assert "zfs release zfs_autobackup:bak p/data@mine" in commands_of(plan)


def test_what_someone_else_holds_is_never_destroyed() -> None:
    held = {"mine": ("keep-me",)}
    here = state([dataset("p/data", (S1, "mine"), lineage="p/data", holds=held)])
    plan = plan_of(RestoreRequest("p/data", snapshot=S2, force=True), here)
    assert plan.actions == ()
    assert "p/data@mine is held by keep-me" in plan.problems[0].message


def test_a_rollback_lists_and_destroys_the_later_bookmarks_too() -> None:
    here = state([dataset("p/data", (S1, S2), lineage="p/data", bookmarks={"mark": S2})])
    plan = plan_of(RestoreRequest("p/data", snapshot=S1, force=True), here)
    (rollback,) = [a for a in plan.actions if isinstance(a, Rollback)]
    assert rollback.destroy_newer and f"@{S2}" in rollback.reason and "#mark" in rollback.reason
    assert f"zfs rollback -r p/data@{S1}" in commands_of(plan)


def test_a_child_under_a_refused_dataset_is_refused_too() -> None:
    copies = state([
        dataset("backup/p/data", (S1,), lineage="p/data"),
        dataset("backup/p/data/mid"),  # (a placeholder: nothing of it was sent)
        dataset("backup/p/data/mid/leaf", (S1,), lineage="p/data/mid/leaf"),
    ])  # fmt: skip
    desires = desire_restore(JOB, RestoreRequest("p/data", recursive=True), copies, None, {})
    assert [d.case for d in desires] == [Case.FULL, Case.REFUSED, Case.REFUSED]
    assert "has no snapshots" in desires[1].why
    assert desires[2].why == "p/data/mid is not restored"


def test_a_snapshot_held_by_an_earlier_restore_is_neither_held_nor_released() -> None:
    held = {S3: ("zfs_autobackup:bak:restore",)}
    copies = state([dataset("backup/p/data", (S1, S2, S3), lineage="p/data", holds=held)])
    plan = build_restore_plan(JOB, desire_restore(JOB, RestoreRequest("p/data"), copies, None, {}))
    assert not any(isinstance(a, (Hold, Release)) for a in plan.actions)
    assert any("an earlier restore" in n.text for n in plan.notes)


def test_beside_the_original_the_selection_stays_received_and_the_plan_says_so() -> None:
    plan = plan_of(RestoreRequest("p/data", to="p/copy"), None)
    assert not any(isinstance(a, SetProperty) for a in plan.actions)
    assert any("stays a received value" in n.text for n in plan.notes)


def test_an_encrypt_backup_restores_decrypted_without_properties() -> None:
    encrypting = job(encrypt=True)
    copies = state([dataset("backup/p/data", (S1,), lineage="p/data", encryption="aes-256-gcm")])
    desires = desire_restore(encrypting, RestoreRequest("p/data"), copies, None, {})
    plan = build_restore_plan(encrypting, desires)
    compiled = compile_plan(plan, encrypting.transfer_recipe, Snapshotting(), Facts(), Options())
    sends = [c.argv for st in compiled.steps for c in st.commands if c.argv[:2] == ("zfs", "send")]
    assert sends == [("zfs", "send", f"backup/p/data@{S1}")]
    assert any("restored decrypted" in n.text for n in plan.notes)


def test_in_an_encrypt_backup_an_encrypted_source_was_sent_raw_and_restores_raw() -> None:
    """--encrypt sends an encrypted source raw: its copy is an encryption root of its own
    (a keylocation set on it), restored raw; the others inherit the target's key."""
    encrypting = job(encrypt=True)
    copies = state([
        dataset("backup/p/data", (S1,), lineage="p/data", encryption="aes-256-gcm"),
        dataset("backup/p/data/secret", (S1,), lineage="p/data/secret", encryption="aes-256-gcm"),
    ])  # fmt: skip
    keys = {"backup/p/data/secret": "prompt"}
    request = RestoreRequest("p/data", recursive=True)
    desires = desire_restore(encrypting, request, copies, None, {}, keys)
    assert [(d.destination, d.raw, d.decrypted) for d in desires] == [
        ("p/data", False, True), ("p/data/secret", True, False),
    ]  # fmt: skip
    notes = [n.text for n in build_restore_plan(encrypting, desires).notes]
    assert any("zfs load-key p/data/secret (keylocation=prompt" in t for t in notes), notes
    # --raw: all of them raw, the one the backup server encrypted with its key
    request = RestoreRequest("p/data", recursive=True, raw=True)
    desires = desire_restore(encrypting, request, copies, None, {}, keys)
    assert [(d.raw, d.decrypted) for d in desires] == [(True, False), (True, False)]
    notes = [n.text for n in build_restore_plan(encrypting, desires).notes]
    assert any("passphrase of the key that encrypted it on the backup server" in t for t in notes)
    # (onto the unencrypted original, zfs would refuse a raw stream: refused beforehand)
    here = state([dataset("p/data", (S1,), lineage="p/data")])
    forced = RestoreRequest("p/data", force=True, raw=True)
    (desire,) = desire_restore(encrypting, forced, copies, here, {}, keys)[:1]
    assert desire.case is Case.REFUSED and "is not encrypted" in desire.why, desire.why


def test_force_onto_the_chosen_snapshot_itself_is_a_rollback_without_a_send() -> None:
    here = state([dataset("p/data", (S1, S2), lineage="p/data", written=100)])
    plan = plan_of(RestoreRequest("p/data", snapshot=S2, force=True), here)
    assert [type(a) for a in plan.actions] == [Hold, Rollback, SetProperty, Release]
    assert f"zfs rollback p/data@{S2}" in commands_of(plan)


def test_a_dataset_without_a_snapshot_in_common_is_refused_whatever_the_force() -> None:
    here = state([dataset("p/data", ("other",), lineage="elsewhere")])
    plan = plan_of(RestoreRequest("p/data", force=True), here)
    assert plan.actions == ()
    (problem,) = plan.problems
    assert "--to NEW" in problem.message and "nothing is destroyed on a guess" in problem.message


def test_a_dataset_at_the_snapshot_already_needs_nothing() -> None:
    here = state([dataset("p/data", (S1, S2, S3), lineage="p/data")])
    (desire,) = desire_restore(JOB, RestoreRequest("p/data"), COPIES, here, RECEIVED)
    assert desire.case is Case.CURRENT
    assert plan_of(RestoreRequest("p/data"), here).actions == ()


def test_recursive_restores_the_children_after_their_parent() -> None:
    plan = plan_of(RestoreRequest("p/data", recursive=True), None)
    restores = [(i, a) for i, a in enumerate(plan.actions) if isinstance(a, Restore)]
    assert [a.dataset for _, a in restores] == ["p/data", "p/data/child"]
    child = restores[1][0]
    parent = restores[0][0]
    # the child's hold waits for the parent's restore, its restore for its hold
    assert parent < child
    mounts = [a.dataset for a in plan.actions if isinstance(a, Mount)]
    assert mounts == ["p/data", "p/data/child"]


def test_an_older_snapshot_says_what_the_next_backup_does_with_the_newer_ones() -> None:
    plan = plan_of(RestoreRequest("p/data", snapshot=S1), None)
    texts = [n.text for n in plan.notes]
    assert any("2 snapshot(s) after" in t and "--destroy-incompatible" in t for t in texts), texts


def test_a_raw_copy_restores_raw_leaves_the_overrides_behind_and_says_which_key() -> None:
    """-w -p, not -w -b (zfs recv of that aborts, openzfs #17011: measured on 2.3.2), and
    the receive leaves out what the target set on the copy (--set-properties, the
    admin's) or puts back the value received under it (--clear-mountpoint over the
    source's canmount), whatever options the restore runs with."""
    copies = state([dataset("backup/p/data", (S1,), lineage="p/data", encryption="aes-256-gcm")])
    backup = JOB
    keys = {"backup/p/data": "file:///root/k"}
    local = {"backup/p/data": {"keylocation": None, "com.example:x": None,
                               "canmount": "noauto", "volsize": None}}  # fmt: skip
    desires = desire_restore(backup, RestoreRequest("p/data"), copies, None, {}, keys, local)
    plan = build_restore_plan(backup, desires)
    (restore,) = [a for a in plan.actions if isinstance(a, Restore)]
    assert restore.raw
    compiled = compile_plan(plan, backup.transfer_recipe, Snapshotting(), Facts(), Options())
    (pipeline,) = [s.commands for s in compiled.steps if s.kind == "restore"]
    assert [c.argv for c in pipeline] == [
        ("zfs", "send", "-w", "-p", f"backup/p/data@{S1}"),
        ("zfs", "recv", "-u", "-x", "com.example:x", "-o", "canmount=noauto", "p/data"),
    ]
    assert any(
        "zfs load-key p/data (keylocation=file:///root/k, as backed up)" in n.text
        for n in plan.notes
    )


@pytest.mark.parametrize(
    ("spec", "chosen"),
    [(None, S3), (S2, S2), (f"backup/p/data@{S2}", S2), ("2026-01-02 13:00", S2),
     ("2026-01-02", S2), ("2026-01-03 12:00:00", S3)],
)  # fmt: skip
def test_snapshot_by_name_or_time(spec: Optional[str], chosen: str) -> None:
    assert choose_snapshot(JOB, COPIES.datasets["backup/p/data"], spec).name == chosen


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nope", "no snapshot of that name"), ("2025-12-31", "no snapshot of this backup at or before"),
     ("2026-13-01", "month must be in 1..12")],
)  # fmt: skip
def test_a_bad_snapshot_is_one_line_naming_it(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        choose_snapshot(JOB, COPIES.datasets["backup/p/data"], spec)


def test_a_dataset_the_backup_does_not_have_is_refused() -> None:
    with pytest.raises(UsageError, match="the backup has no copy of p/else"):
        desire_restore(JOB, RestoreRequest("p/else"), COPIES, None, {})


def test_a_restore_waits_for_no_backup_run_and_changes_nothing_meanwhile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The restore takes the backup's own lock (the job is the backup's command line):
    while a backup run holds it, the restore is refused before it reads or writes
    anything, and the other way round."""
    monkeypatch.setattr(lock, "_folder", lambda: tmp_path)
    _zfs, runner = fakecli.world()
    assert fakecli.run(["bak", "dst"], runner) == 0
    backup = job_from_args(build_parser().parse_args(["bak", "dst"]))
    before = list(runner.history)
    with backup_lock(backup):
        code = cli.main(["restore", "bak", "dst", "src/data"], fakecli.deps(runner))
    assert code == 1
    assert runner.history == before


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A plan signing key and a lock folder of the test's own."""
    monkeypatch.setenv("ZFS_AUTOBACKUP_PLAN_KEY", str(tmp_path / "plan.key"))
    monkeypatch.setattr(lock, "_folder", lambda: tmp_path)
    return tmp_path


def test_a_saved_restore_plan_changes_nothing_and_apply_file_restores(keyed: Path) -> None:
    zfs, runner = fakecli.world()
    assert fakecli.run(["bak", "dst"], runner) == 0
    saved = keyed / "restore.plan"
    before = fakecli.writes(runner)
    args = ["bak", "dst", "src/data", "--to", "src/new", "--recursive"]
    assert fakecli.run(["plan", "restore", *args, "--out", str(saved)], runner) == 0
    assert fakecli.writes(runner) == before and "src/new" not in zfs.datasets
    assert loads(saved.read_text()).restore == RestoreRequest(
        "src/data", to="src/new", recursive=True
    )
    assert fakecli.run(["apply", str(saved)], runner) == 0
    for child in ("", "/a", "/b"):
        restored, copy = zfs.datasets[f"src/new{child}"], zfs.datasets[f"dst/src/data{child}"]
        assert [(s.name, s.guid, s.data) for s in restored.snaps] == [
            (s.name, s.guid, s.data) for s in copy.snaps
        ]
    # (the restore's hold is gone again)
    assert [s.holds for s in zfs.datasets["dst/src/data"].snaps] == [["zfs_autobackup:bak"]]


def test_a_saved_restore_plan_is_refused_when_what_it_assumed_changed(keyed: Path) -> None:
    """A new snapshot on the copy, or bytes written on the destination that --force
    would roll back, since the plan was made: refused, nothing changes."""
    zfs, runner = fakecli.world()
    assert fakecli.run(["bak", "dst"], runner) == 0
    saved = keyed / "restore.plan"
    args = ["plan", "restore", "bak", "dst", "src/data", "--force", "--out", str(saved)]
    zfs.write("src/data")
    assert fakecli.run(args, runner) == 0
    zfs.write("src/data")  # (more since the plan: not what the user agreed to lose)
    before = (fakecli.writes(runner), zfs.datasets["src/data"].data)
    assert fakecli.run(["apply", str(saved)], runner) == 1
    assert (fakecli.writes(runner), zfs.datasets["src/data"].data) == before

    assert fakecli.run(args, runner) == 0
    later = fakecli.deps(runner, now=fakecli.START + 7200)
    assert cli.main(["bak", "dst", "--allow-empty"], later) == 0  # (a newer backup)
    assert len(zfs.datasets["dst/src/data"].snaps) == 2
    before = (fakecli.writes(runner), zfs.datasets["src/data"].data)
    assert fakecli.run(["apply", str(saved)], runner) == 1
    assert (fakecli.writes(runner), zfs.datasets["src/data"].data) == before


def test_plan_restore_json_is_the_plan_file_show_reads(
    keyed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _zfs, runner = fakecli.world()
    assert fakecli.run(["bak", "dst"], runner) == 0
    capsys.readouterr()
    args = ["plan", "restore", "bak", "dst", "src/other", "--to", "src/else", "--json"]
    assert fakecli.run(args, runner) == 0
    text = capsys.readouterr().out
    assert loads(text, key=load_key(create=False)).restore == RestoreRequest(
        "src/other", to="src/else"
    )
    (keyed / "p.json").write_text(text)
    assert fakecli.run(["show", str(keyed / "p.json")], runner) == 0
    shown = capsys.readouterr().out
    assert "A plan to restore src/other as src/else, from backup 'bak'" in shown
    assert "full: src/else does not exist" in shown and "| zfs recv -u src/else" in shown


def test_a_saved_restore_plan_rests_only_on_what_it_restores(
    keyed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --recursive, a write on a child it leaves alone does not refuse it; a
    restore's plan runs no snapshot commands and show says none; apply FILE of it takes
    no backup reporting options (refused, nothing changed)."""
    zfs, runner = fakecli.world()
    assert fakecli.run(["bak", "dst"], runner) == 0
    saved = keyed / "restore.plan"
    args = ["bak", "dst", "src/data", "--force", "--pre-snapshot-cmd", "echo hi"]
    zfs.write("src/data")
    assert fakecli.run(["plan", "restore", *args, "--out", str(saved)], runner) == 0
    capsys.readouterr()
    assert fakecli.run(["show", str(saved)], runner) == 0
    assert "echo hi" not in capsys.readouterr().out
    zfs.write("src/data/a")
    before = fakecli.writes(runner)
    assert fakecli.run(["apply", str(saved), "--on-failure", "true"], runner) == 1
    assert fakecli.writes(runner) == before
    assert fakecli.run(["apply", str(saved)], runner) == 0
    assert fakecli.writes(runner) != before
    restored = zfs.datasets["src/data"]
    assert restored.snaps[-1].guid == zfs.datasets["dst/src/data"].snaps[-1].guid


def test_the_locally_set_properties_are_read_whatever_their_received_values_hold() -> None:
    """`zfs get -o name,property,received -s local all`: a received value with a tab or
    a newline in it is read whole; "-" is no received value."""
    out = (
        "b/p\tcanmount\ton\n"
        "b/p\tcom.example:x\t-\n"
        "b/p\tcom.example:t\ta\tb\n"
        "b/p\tcom.example:n\tline 1\nline 2\n"
        "b/p/c\tkeylocation\t-\n"
    )
    assert zfs_text.parse_local(out) == {
        "b/p": {"canmount": "on", "com.example:x": None, "com.example:t": "a\tb",
                "com.example:n": "line 1\nline 2"},
        "b/p/c": {"keylocation": None},
    }  # fmt: skip
    with pytest.raises(ZfsError):
        zfs_text.parse_local("no tabs here\n")
