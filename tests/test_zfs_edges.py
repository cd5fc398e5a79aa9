"""The edges of issue #16 on real OpenZFS: each way a backup was blocked or lost where
zfs-autobackup 3.3 goes on, as a user meets it. (Compared with 3.3 itself, run by run:
tests/test_zfs_differential.py; the same rules on plans: tests/test_edges.py.)
"""

from __future__ import annotations

import shlex

import pytest

from tests.zfsvm.bed import Pools, ZfsBed

pytestmark = pytest.mark.zfs


def stamp(hour: int, day: int = 1) -> str:
    return f"2026-01-{day:02d} {hour:02d}:00:00"


def snapname(hour: int, day: int = 1, name: str = "edge") -> str:
    return f"{name}-202601{day:02d}{hour:02d}0000"


def _one(zfs_bed: ZfsBed, pools: Pools, name: str = "data") -> tuple[str, str]:
    s = pools.src
    zfs_bed.run(f"zfs create {s}/{name} && zfs set autobackup:edge=true {s}/{name}")
    return f"{s}/{name}", f"{pools.dst}/{s}/{name}"


def test_clones_and_refused_destroys_never_block_the_backup(zfs_bed: ZfsBed, pools: Pools) -> None:
    """#1: a backup snapshot cloned on the target (to restore a file) is kept, and the
    plan says why; a clone made after the tool looked (here by --pre-snapshot-cmd, between
    observation and the destroy) makes zfs refuse the whole batched destroy: the others
    of the batch are destroyed one by one, the refused one is reported, the send goes on,
    and nothing counts as failed (as 3.3)."""
    d = pools.dst
    src, tgt = _one(zfs_bed, pools)
    keep = ["--keep-target=3", "--keep-source=10", "--allow-empty"]
    for hour in (1, 2, 3):
        assert zfs_bed.tool("edge", d, *keep, now=stamp(hour)).returncode == 0
    zfs_bed.sh("zfs", "clone", f"{tgt}@{snapname(1)}", f"{d}/restore")
    plan = zfs_bed.tool("plan", "edge", d, *keep, now=stamp(4))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"{tgt}@{snapname(1)}  kept: origin of 1 clone: {d}/restore" in plan.stdout
    run = zfs_bed.tool("edge", d, *keep, "--verbose", now=stamp(4))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.snapshots(tgt) == [snapname(h) for h in (1, 2, 3, 4)]

    race = f"zfs clone {tgt}@{snapname(2)} {d}/restore2"
    run = zfs_bed.tool(
        "edge", d, "--keep-target=2", "--keep-source=10", "--allow-empty",
        "--pre-snapshot-cmd", race, "--debug", now=stamp(5),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    batch = f"zfs destroy {tgt}@{snapname(2)},{snapname(3)}"
    assert any(batch in line for line in run.stdout.splitlines()), run.stdout
    assert f"{tgt}@{snapname(2)}: can't destroy it" in run.stderr
    assert zfs_bed.snapshots(tgt) == [snapname(h) for h in (1, 2, 4, 5)]
    assert zfs_bed.holds(f"{tgt}@{snapname(5)}") == ["zfs_autobackup:edge"]
    assert zfs_bed.bookmarks(src) == [f"{snapname(5)}__{zfs_bed.prop(d, 'guid')}"]


def test_snapshot_only_mode_leaves_received_backups_alone(zfs_bed: ZfsBed, pools: Pools) -> None:
    """#2: a host that also holds a partner's backups (their selection values arrived as
    received properties): a local run without TARGET-PATH does not snapshot or thin them
    (3.3 turns --exclude-received on by itself there), unless --include-received."""
    d = pools.dst
    src, tgt = _one(zfs_bed, pools)
    for hour in (1, 2, 3):  # (as 3.3: the source holds the common snapshot)
        run = zfs_bed.tool("edge", d, "--allow-empty", "--no-bookmarks", now=stamp(hour))
        assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(tgt, "autobackup:edge") == "true"
    received = zfs_bed.snapshots(tgt)
    run = zfs_bed.tool("edge", "--keep-source=1", "--allow-empty", "--verbose", now=stamp(4))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "adding --exclude-received to commandline" in run.stdout
    assert f"{tgt}: Ignored (dataset already received)" in run.stdout
    assert zfs_bed.snapshots(tgt) == received
    assert zfs_bed.snapshots(src) == [snapname(3), snapname(4)]  # (3 is held: common)
    run = zfs_bed.tool("edge", "--keep-source=1", "--allow-empty", "--include-received",
                       now=stamp(5))  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert snapname(5) in zfs_bed.snapshots(tgt)
    assert snapname(1) not in zfs_bed.snapshots(tgt)


def test_input_it_cannot_trust_stops_the_run_before_anything_changes(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """#3: a TARGET-PATH with a leading slash (zfs would list whatever is mounted there);
    #4: an invalid selection value, inherited by a child (it would turn the backup into
    a missing dataset, destroyed with --destroy-missing): 255, nothing changed."""
    s, d = pools.src, pools.dst
    src, _ = _one(zfs_bed, pools)
    zfs_bed.sh("zfs", "create", f"{src}/sub")
    assert zfs_bed.tool("edge", d, now=stamp(1)).returncode == 0
    before = zfs_bed.names(s, d)
    run = zfs_bed.tool("edge", f"/mnt/{d}", "--destroy-missing=0s", now=stamp(2))
    assert run.returncode == 255
    assert "a dataset name never starts with a / (Target should not start with a /)" in run.stderr
    zfs_bed.sh("zfs", "set", "autobackup:edge=yes", src)
    run = zfs_bed.tool("edge", d, "--allow-empty", "--destroy-missing=0s", now=stamp(3))
    assert run.returncode == 255, run.stdout + run.stderr
    assert f"{src}/sub: invalid value 'yes' of autobackup:edge (inherited from {src})" in run.stderr
    assert f"{src}: invalid value 'yes' of autobackup:edge (local)" in run.stderr
    assert zfs_bed.names(s, d) == before


def test_a_foreign_common_snapshots_hold_is_released(zfs_bed: ZfsBed, pools: Pools) -> None:
    """#6: with --other-snapshots another tool's snapshot becomes the common one and is
    held; once a newer one is common, its hold goes (whatever its name), so that tool can
    destroy it again. Holds change only when something is sent. (Source holds: as 3.3,
    with --no-bookmarks.)"""
    d = pools.dst
    src, tgt = _one(zfs_bed, pools)
    assert (
        zfs_bed.tool("edge", d, "--other-snapshots", "--no-bookmarks", now=stamp(1)).returncode == 0
    )
    zfs_bed.write(src, "f", 16)
    zfs_bed.sh("zfs", "snapshot", f"{src}@sanoid-1")
    assert (
        zfs_bed.tool(
            "edge", d, "--other-snapshots", "--no-bookmarks", "--no-snapshot", now=stamp(2)
        ).returncode
        == 0
    )
    assert zfs_bed.holds(f"{src}@sanoid-1") == ["zfs_autobackup:edge"]
    assert zfs_bed.holds(f"{tgt}@sanoid-1") == ["zfs_autobackup:edge"]
    # nothing to send: nothing about holds changes
    assert (
        zfs_bed.tool(
            "edge", d, "--other-snapshots", "--no-bookmarks", "--no-snapshot", now=stamp(3)
        ).returncode
        == 0
    )
    assert zfs_bed.holds(f"{src}@sanoid-1") == ["zfs_autobackup:edge"]
    run = zfs_bed.tool(
        "edge", d, "--other-snapshots", "--no-bookmarks", "--allow-empty", now=stamp(4)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.holds(f"{src}@sanoid-1") == [] and zfs_bed.holds(f"{tgt}@sanoid-1") == []
    assert zfs_bed.holds(f"{tgt}@{snapname(4)}") == ["zfs_autobackup:edge"]
    zfs_bed.sh("zfs", "destroy", f"{src}@sanoid-1")  # that tool can thin its own again


def test_no_send_keeps_a_partly_received_first_backup(zfs_bed: ZfsBed, pools: Pools) -> None:
    """#7: --no-send leaves resume tokens alone (zfs recv -A would delete what arrived of
    a first full backup); the next run resumes it."""
    d = pools.dst
    src, tgt = _one(zfs_bed, pools)
    zfs_bed.write(src, "big", 3 * 1024)
    cut = ["--send-pipe", "head -c 1000000"]
    run = zfs_bed.tool("edge", d, *cut, now=stamp(1))
    assert run.returncode == 1, run.stdout + run.stderr
    assert zfs_bed.prop(tgt, "receive_resume_token") not in ("-", "")
    run = zfs_bed.tool("edge", d, "--no-send", "--verbose", now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Aborting resume" not in run.stdout
    assert zfs_bed.prop(tgt, "receive_resume_token") not in ("-", "")
    run = zfs_bed.tool("edge", d, "--no-snapshot", "--verbose", now=stamp(3))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{tgt}@{snapname(1)}: resuming" in run.stdout
    assert zfs_bed.checksum(f"{tgt}@{snapname(1)}") == zfs_bed.checksum(f"{src}@{snapname(1)}")


def test_an_edited_or_outdated_plan_file_is_refused(zfs_bed: ZfsBed, pools: Pools) -> None:
    """#9: apply FILE runs only what this job makes now from what is there now. An edited
    file (a command slipped into its job, its checksum recomputed the way an unkeyed one
    could be) fails its signature; a signed plan that the state no longer gives (the
    target was written to since) is refused too. Nothing is applied."""
    d = pools.dst
    src, tgt = _one(zfs_bed, pools)
    assert zfs_bed.tool("edge", d, now=stamp(1)).returncode == 0
    zfs_bed.write(src, "f", 16)
    assert zfs_bed.tool("plan", "edge", d, "--out", "/tmp/edge.plan", now=stamp(2)).returncode == 0
    edit = (
        "import hashlib, json; p = json.load(open('/tmp/edge.plan')); p.pop('hmac_sha256'); "
        "p['job']['snapshotting']['pre_cmds'] = [['touch', '/tmp/owned']]; "
        "c = json.dumps(p, sort_keys=True, separators=(',', ':'), ensure_ascii=False); "
        "p['hmac_sha256'] = hashlib.sha256(c.encode()).hexdigest(); "
        "json.dump(p, open('/tmp/edited.plan', 'w'))"
    )
    zfs_bed.run(f"rm -f /tmp/owned; python3 -c {shlex.quote(edit)}")
    run = zfs_bed.tool("apply", "/tmp/edited.plan")
    assert run.returncode == 1 and "its signature does not match" in run.stderr, run.stderr
    zfs_bed.run("test ! -e /tmp/owned")
    # written into the target since the plan: drift does not record it, the new plan differs
    zfs_bed.run(
        f"zfs set readonly=off {tgt} && touch $(zfs get -H -o value mountpoint {tgt})/x && "
        f"zpool sync {d}"
    )
    run = zfs_bed.tool("apply", "/tmp/edge.plan")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "is not the plan this job makes now" in run.stderr
    assert snapname(2) not in zfs_bed.snapshots(src)


def test_excluded_snapshots_do_not_push_backups_out_of_the_target(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """#10 (deliberately unlike 3.3): snapshots --exclude-snapshot-pattern keeps from being
    sent do not count in the target's "keep the last N"."""
    d = pools.dst
    src, tgt = _one(zfs_bed, pools)
    # the hourly snapshots are made here (fewer tool runs): 1-3 are sent, then 4 and 5
    # are made and kept from being sent
    zfs_bed.run(" && ".join(f"zfs snapshot {src}@{snapname(hour)}" for hour in (1, 2, 3)))
    run = zfs_bed.tool("edge", d, "--keep-target=3", "--no-snapshot", now=stamp(3))
    assert run.returncode == 0, run.stdout + run.stderr
    zfs_bed.run(" && ".join(f"zfs snapshot {src}@{snapname(hour)}" for hour in (4, 5)))
    exclude = ["--exclude-snapshot-pattern", "0[45]0000$"]
    run = zfs_bed.tool("edge", d, "--keep-target=3", "--no-snapshot", *exclude, now=stamp(5))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.snapshots(tgt) == [snapname(1), snapname(2), snapname(3)]
    assert snapname(5) in zfs_bed.snapshots(src)


def test_target_pool_features_and_parents_as_3_3(zfs_bed: ZfsBed, pools: Pools) -> None:
    """`zfs recv -s` only where the target pool has extensible_dataset (a pool made with
    `zpool create -d` has no features); missing parents are made with canmount=off, also
    on a first run with --no-snapshot; a received filesystem is mounted (3.3's
    automount), a parent made only to hold backups is not."""
    s = pools.src
    old = zfs_bed.create_pools(("old",))
    try:
        t = old.names[0]
        zfs_bed.run(
            f"zpool destroy {t} && zpool create -f -d -o cachefile=none -m /mnt/{t} {t} /var/tmp/pools/{t}.img"
        )
        src, _ = _one(zfs_bed, pools, "deep")
        zfs_bed.sh("zfs", "create", f"{src}/leaf")
        run = zfs_bed.tool("edge", t, "--no-snapshot", now=stamp(1))
        assert run.returncode == 0, run.stdout + run.stderr
        assert zfs_bed.names(t) == [t, f"{t}/{s}"]
        assert zfs_bed.prop(f"{t}/{s}", "canmount") == "off"
        run = zfs_bed.tool("edge", t, "--debug", now=stamp(2))
        assert run.returncode == 0, run.stdout + run.stderr
        recv = [line for line in run.stdout.splitlines() if "CMD >" in line and "zfs recv" in line]
        assert recv and all(" -s " not in line for line in recv), recv
        assert zfs_bed.prop(f"{t}/{s}/deep", "mounted") == "yes"
        assert zfs_bed.prop(f"{t}/{s}/deep/leaf", "mounted") == "yes"
        assert zfs_bed.prop(f"{t}/{s}", "mounted") == "no"
    finally:
        zfs_bed.destroy_pools(old)


def test_decrypt_into_an_encrypted_target_path(zfs_bed: ZfsBed, pools: Pools) -> None:
    """3.3's test_decrypt: --decrypt sends unencrypted datasets with their properties, so
    under an encrypted target path they stay unencrypted (without -p, zfs would encrypt
    them, and refuse an embedded-data stream for that)."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        "echo 'correct horse battery' > /root/zfs.key && "
        f"zfs create -p {s}/fs1/sub && zfs set autobackup:edge=true {s}/fs1 && "
        f"zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/zfs.key {s}/fs1/enc && "
        f"zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/zfs.key {d}/vault"
    )
    for ds in ("fs1", "fs1/sub", "fs1/enc"):
        zfs_bed.write(f"{s}/{ds}", "f", 64)
        zfs_bed.run(f"echo small > $(zfs get -H -o value mountpoint {s}/{ds})/s && zpool sync {s}")
    for hour in (1, 2):
        run = zfs_bed.tool("edge", f"{d}/vault", "--decrypt", "--allow-empty", now=stamp(hour))
        assert run.returncode == 0, run.stdout + run.stderr
    roots = zfs_bed.run(
        f"zfs get -H -r -t filesystem -o name,value encryptionroot {d}/vault"
    ).stdout
    assert roots.split("\n")[:5] == [
        f"{d}/vault\t{d}/vault",
        f"{d}/vault/{s}\t{d}/vault",  # a parent made to hold backups: inside the vault
        f"{d}/vault/{s}/fs1\t-",
        f"{d}/vault/{s}/fs1/enc\t-",
        f"{d}/vault/{s}/fs1/sub\t-",
    ]
    assert zfs_bed.checksum(f"{d}/vault/{s}/fs1/enc@{snapname(2)}") == zfs_bed.checksum(
        f"{s}/fs1/enc@{snapname(2)}"
    )


def test_a_log_reader_that_goes_away_does_not_stop_the_backup(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """#32: `zfs-autobackup -v ... | head -1` stopped after `zfs snapshot` (BrokenPipeError)
    and sent nothing. The reader going away stops the log, never the work: every selected
    dataset arrives, the exit code is the run's (0), and no traceback."""
    s, d = pools.src, pools.dst
    names = ("logs", "logs/a", "logs/b", "logs/c")
    zfs_bed.run(f"zfs create -p {s}/logs/a && zfs create {s}/logs/b && zfs create {s}/logs/c")
    zfs_bed.run(f"zfs set autobackup:edge=true {s}/logs")
    for name in names:
        zfs_bed.write(f"{s}/{name}", "f", 64)
    tool = shlex.join(["zfs-autobackup", "-v", "--debug", "edge", d])
    script = f'set -o pipefail; {tool} 2>/tmp/edge-stderr | head -1; echo "rc=${{PIPESTATUS[0]}}"'
    run = zfs_bed.run(f"bash -c {shlex.quote(script)}", check=False)
    lines = run.stdout.splitlines()
    stderr = zfs_bed.run("cat /tmp/edge-stderr").stdout
    assert len(lines) == 2 and lines[1] == "rc=0", run.stdout + stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    snapshots = {zfs_bed.snapshots(f"{s}/{name}")[-1] for name in names}
    assert len(snapshots) == 1
    for name in names:
        assert zfs_bed.snapshots(f"{d}/{s}/{name}") == zfs_bed.snapshots(f"{s}/{name}")


@pytest.mark.slow
def test_encrypt_twice_into_a_vault_against_3_3(zfs_bed: ZfsBed, pools: Pools) -> None:
    """3.3 as the oracle, and a deliberate difference (docs/migration.md): --encrypt into an
    encrypted target path, twice. 3.3 mounts the dataset after its first receive; that
    mount writes to it (zfs upgrades its space accounting), and zfs refuses 3.3's second
    run. This tool leaves it unmounted, and its second run is incremental."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        "echo 'correct horse battery' > /root/zfs.key && "
        f"zfs create -o encryption=on -o keyformat=passphrase -o keylocation=file:///root/zfs.key {d}/vault && "
        f"zfs create {s}/theirs && zfs set autobackup:v33=true {s}/theirs && "
        f"zfs create {s}/ours && zfs set autobackup:edge=true {s}/ours"
    )
    for hour in (1, 2):
        zfs_bed.write(f"{s}/theirs", f"f{hour}", 64)
        zfs_bed.write(f"{s}/ours", f"f{hour}", 64)
        theirs = zfs_bed.tool_v33("v33", f"{d}/vault", "--encrypt", now=stamp(hour))
        ours = zfs_bed.tool("edge", f"{d}/vault", "--encrypt", "--verbose", now=stamp(hour))
        assert ours.returncode == 0, ours.stdout + ours.stderr
        if hour == 1:
            assert theirs.returncode == 0, theirs.stdout + theirs.stderr
            assert zfs_bed.prop(f"{d}/vault/{s}/theirs", "mounted") == "yes"
            assert zfs_bed.prop(f"{d}/vault/{s}/ours", "mounted") == "no"
    assert theirs.returncode != 0
    assert "modified" in theirs.stdout + theirs.stderr, theirs.stdout + theirs.stderr
    assert f"{d}/vault/{s}/ours@edge-2026" in ours.stdout and "receiving incremental" in ours.stdout
    assert len(zfs_bed.snapshots(f"{d}/vault/{s}/ours")) == 2
