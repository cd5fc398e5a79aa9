"""Restore on real OpenZFS (#34): the drill, in local, pull, push and pull+push mode.

1. back up (a tree, with the target's overrides: --clear-mountpoint, --set-properties);
2. destroy the source dataset;
3. `plan restore`: nothing changes;
4. `restore --recursive`;
5. the files equal the backup's (checksums), the properties are the source's, not the
   target's overrides, and the selection property is set here again;
6. the next backup is incremental: the target's snapshots keep their guids, the new
   one arrives, nothing is sent in full;
7. `verify`: the restored datasets hold the backup's data.
"""

from __future__ import annotations

import shlex

import pytest

from tests.zfsvm.bed import POOL_DIR, Pools, ZfsBed
from tests.zfsvm.guest import LOCAL, PEER

pytestmark = pytest.mark.zfs

MODES = {
    "local": [], "pull": ["--ssh-source", LOCAL], "push": ["--ssh-target", LOCAL],
    "pull+push": ["--ssh-source", LOCAL, "--ssh-target", LOCAL],
}  # fmt: skip


def stamp(hour: int) -> str:
    return f"2026-01-01 {hour:02d}:00:00"


def snapname(hour: int) -> str:
    return f"rst-20260101{hour:02d}0000"


def _state(bed: ZfsBed, pools: Pools) -> list[tuple[str, str]]:
    """Every dataset and snapshot of both pools with its guid (what must not change)."""
    out = bed.sh("zfs", "list", "-H", "-p", "-o", "name,guid", "-t", "all", "-r", *pools.names)
    return [tuple(line.split("\t")) for line in out.splitlines()]  # type: ignore[misc]


def _backed_up_tree(bed: ZfsBed, pools: Pools, mode: list[str], hours: int = 1) -> str:
    """src/data (mountpoint, compression and a user property set) with a child and a
    volume, backed up `hours` times with the target's overrides; returns the target path."""
    s, d = pools.src, pools.dst
    bed.sh("zfs", "create", "-o", f"mountpoint=/mnt/{s}-data", "-o", "compression=lz4",
           "-o", "com.example:note=mine", f"{s}/data")  # fmt: skip
    bed.sh("zfs", "create", f"{s}/data/child")
    bed.sh("zfs", "create", "-V", "8M", f"{s}/data/vol")
    bed.run(f"udevadm settle && dd if=/dev/urandom of=/dev/zvol/{s}/data/vol bs=64k count=16 "
            f"status=none && zpool sync {s}")  # fmt: skip
    bed.sh("zfs", "set", "autobackup:rst=true", f"{s}/data")
    bed.sh("zfs", "create", f"{d}/backup")
    for hour in range(1, hours + 1):
        bed.write(f"{s}/data", f"f{hour}", 96)
        bed.write(f"{s}/data/child", f"c{hour}", 32)
        run = bed.tool(*mode, "rst", f"{d}/backup", "--clear-mountpoint",
                       "--set-properties", "com.example:over=target", now=stamp(hour))  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
    return f"{d}/backup"


def _device_sum(bed: ZfsBed, volume: str) -> str:
    """sha256 of a volume's whole device."""
    out = bed.run(f"udevadm settle && sha256sum /dev/zvol/{volume}").stdout
    return out.split()[0]


# (CI runs the local drill; pull, push and pull+push with --slow)
@pytest.mark.parametrize(
    "mode", [m if m == "local" else pytest.param(m, marks=pytest.mark.slow) for m in MODES]
)
def test_the_drill(zfs_bed: ZfsBed, pools: Pools, mode: str) -> None:
    s = pools.src
    target = _backed_up_tree(zfs_bed, pools, MODES[mode])
    copy = f"{target}/{s}/data"
    sums = {ds: zfs_bed.checksum(f"{ds}@{snapname(1)}") for ds in (copy, f"{copy}/child")}
    guids = {ds: zfs_bed.guids(ds) for ds in (copy, f"{copy}/child", f"{copy}/vol")}
    volume = _device_sum(zfs_bed, f"{s}/data/vol")  # (as backed up: not written since)
    zfs_bed.sh("zfs", "destroy", "-r", f"{s}/data")

    before = _state(zfs_bed, pools)
    args = [*MODES[mode], "rst", target, f"{s}/data", "--recursive"]
    plan = zfs_bed.tool("plan", "restore", *args, "--commands")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f" -b {copy}@{snapname(1)}" in plan.stdout, plan.stdout
    assert f"zfs recv -u {s}/data" in plan.stdout, plan.stdout
    assert "full:" in plan.stdout and f"{s}/data does not exist" in plan.stdout
    assert _state(zfs_bed, pools) == before  # (nothing changed)

    run = zfs_bed.tool("restore", *args, "--verbose")
    assert run.returncode == 0, run.stdout + run.stderr
    # the data, as backed up
    assert zfs_bed.checksum(f"{s}/data") == sums[copy]
    assert zfs_bed.checksum(f"{s}/data/child") == sums[f"{copy}/child"]
    assert _device_sum(zfs_bed, f"{s}/data/vol") == volume
    assert zfs_bed.guids(f"{s}/data/vol") == guids[f"{copy}/vol"]
    assert zfs_bed.prop(f"{s}/data/vol", "volsize") == str(8 * 1024 * 1024)
    # the source's properties, not the target's overrides; mounted where it was
    assert zfs_bed.prop(f"{s}/data", "mountpoint") == f"/mnt/{s}-data"
    assert zfs_bed.prop(f"{s}/data", "mounted") == "yes"
    assert zfs_bed.prop(f"{s}/data", "compression") == "lz4"
    assert zfs_bed.prop(f"{s}/data", "com.example:note") == "mine"
    assert zfs_bed.prop(f"{s}/data", "com.example:over") == "-"
    assert zfs_bed.prop(f"{s}/data", "canmount") == "on"
    # selected as before, set here (received, --exclude-received would leave it out)
    sel = zfs_bed.sh("zfs", "get", "-H", "-o", "value,source", "autobackup:rst", f"{s}/data")
    assert sel.split() == ["true", "local"]
    # the restore's hold is gone
    assert zfs_bed.holds(f"{copy}@{snapname(1)}") == ["zfs_autobackup:rst"]

    zfs_bed.write(f"{s}/data", "after", 16)
    zfs_bed.write(f"{s}/data/child", "after", 16)  # (unchanged: not snapshotted, as v3)
    nxt = zfs_bed.tool(*MODES[mode], "rst", target, "--clear-mountpoint", "--verbose",
                       "--set-properties", "com.example:over=target", now=stamp(2))  # fmt: skip
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert "receiving full" not in nxt.stdout, nxt.stdout
    assert f"{copy}@{snapname(2)}: receiving incremental" in nxt.stdout, nxt.stdout
    for ds in (copy, f"{copy}/child"):
        assert zfs_bed.guids(ds)[:1] == guids[ds]
        assert zfs_bed.snapshots(ds) == [snapname(1), snapname(2)], (ds, nxt.stdout)
    assert zfs_bed.checksum(f"{copy}@{snapname(2)}") == zfs_bed.checksum(f"{s}/data")
    # the drill ends with verify (docs/restore.md): the restored datasets and their backup
    ver = zfs_bed.tool("verify", *MODES[mode], "rst", target)
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert "3 verified, 0 DIFFERENT, 0 not verifiable" in ver.stdout, ver.stdout
    if mode == "local":  # (CI: on the same set-up, to save a second one)
        _beside_the_live_dataset_and_force(zfs_bed, pools, target)


def _beside_the_live_dataset_and_force(zfs_bed: ZfsBed, pools: Pools, target: str) -> None:
    """--to with an older --snapshot leaves the live dataset alone; a second restore to
    the same place is refused without --force (nothing changes); --force, as a saved
    plan applied with apply FILE, rolls it back to the common snapshot and sends the rest."""
    s = pools.src
    copy = f"{target}/{s}/data"
    live = (zfs_bed.guids(f"{s}/data"), zfs_bed.checksum(f"{s}/data"))
    old = zfs_bed.checksum(f"{copy}@{snapname(1)}")

    run = zfs_bed.tool("restore", "rst", target, f"{s}/data", "--to", f"{s}/copy",
                       "--snapshot", "2026-01-01 01:30")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.checksum(f"{s}/copy@{snapname(1)}") == old
    assert (zfs_bed.guids(f"{s}/data"), zfs_bed.checksum(f"{s}/data")) == live
    # (its mountpoint is the original's, which is in use: the copy is not mounted over it)
    assert zfs_bed.prop(f"{s}/data", "mounted") == "yes"
    assert zfs_bed.prop(f"{s}/copy", "mounted") == "no"

    before = _state(zfs_bed, pools)
    again = zfs_bed.tool("restore", "rst", target, f"{s}/data", "--to", f"{s}/copy")
    assert again.returncode != 0
    assert "--force rolls it back to @" + snapname(1) in again.stdout + again.stderr
    assert _state(zfs_bed, pools) == before

    # (as a saved plan: plan restore --out changes nothing, apply FILE carries it out)
    plan = zfs_bed.tool("plan", "restore", "rst", target, f"{s}/data", "--to", f"{s}/copy",
                        "--force", "--out", "/root/restore.plan")  # fmt: skip
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert _state(zfs_bed, pools) == before
    forced = zfs_bed.tool("apply", "/root/restore.plan")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "Restore complete" in forced.stdout, forced.stdout
    assert zfs_bed.snapshots(f"{s}/copy") == [snapname(1), snapname(2)]
    assert zfs_bed.checksum(f"{s}/copy@{snapname(2)}") == zfs_bed.checksum(f"{copy}@{snapname(2)}")
    assert zfs_bed.guids(f"{s}/copy") == zfs_bed.guids(copy)


@pytest.mark.slow
def test_failback_to_a_new_host_then_incremental_backups_from_it(
    zfs_bed: ZfsBed, zfs_peer: ZfsBed, pools: Pools
) -> None:
    """The source host is lost; a new one (the second guest, a pool of the same name)
    gets the tree back with --ssh-source pointing at it, and the backup goes on from it
    incrementally onto the same snapshots."""
    s = pools.src
    target = _backed_up_tree(zfs_bed, pools, [])
    copy = f"{target}/{s}/data"
    sums = {ds: zfs_bed.checksum(f"{copy}{ds}@{snapname(1)}") for ds in ("", "/child")}
    guids = {ds: zfs_bed.guids(f"{copy}{ds}") for ds in ("", "/child")}
    zfs_peer.run(f"mkdir -p {POOL_DIR} && truncate -s 384M {POOL_DIR}/{s}.img && "
                 f"zpool create -f -o cachefile=none -m /mnt/{s} {s} {POOL_DIR}/{s}.img")  # fmt: skip
    try:
        run = zfs_bed.tool("restore", "--ssh-source", PEER, "rst", target, f"{s}/data",
                           "--recursive")  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert {ds: zfs_peer.checksum(f"{s}/data{ds}") for ds in sums} == sums
        assert zfs_peer.prop(f"{s}/data", "com.example:note") == "mine"
        assert zfs_peer.prop(f"{s}/data", "mountpoint") == f"/mnt/{s}-data"

        zfs_peer.write(f"{s}/data", "after", 16)
        nxt = zfs_bed.tool("--ssh-source", PEER, "rst", target, "--clear-mountpoint",
                           "--set-properties", "com.example:over=target", "--verbose",
                           now=stamp(2))  # fmt: skip
        assert nxt.returncode == 0, nxt.stdout + nxt.stderr
        assert "receiving full" not in nxt.stdout, nxt.stdout
        assert f"{copy}@{snapname(2)}: receiving incremental" in nxt.stdout, nxt.stdout
        assert zfs_bed.guids(copy)[:1] == guids[""]
        assert zfs_bed.checksum(f"{copy}@{snapname(2)}") == zfs_peer.checksum(f"{s}/data")
    finally:
        zfs_peer.run(f"zpool destroy -f {s}; rm -f {POOL_DIR}/{s}.img", check=False)


@pytest.mark.slow
def test_a_backup_started_during_a_restore_is_refused_and_changes_nothing(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """The restore holds the backup's lock: a backup run started meanwhile is refused at
    once and takes no snapshot; the restore completes, and then the backup runs."""
    s = pools.src
    target = _backed_up_tree(zfs_bed, pools, [])
    zfs_bed.sh("zfs", "destroy", "-r", f"{s}/data/child")
    slow = ["--send-pipe", "sh -c 'sleep 6; exec cat'"]
    restore = shlex.join(["zfs-autobackup", "restore", *slow, "rst", target, f"{s}/data/child"])
    zfs_bed.run(f"{{ {restore} > /tmp/restore.log 2>&1; echo $? > /tmp/restore.rc; }} "
                "> /dev/null 2>&1 &")  # fmt: skip
    zfs_bed.run("sleep 2")
    backup = zfs_bed.tool("rst", target, "--clear-mountpoint", now=stamp(2))
    assert backup.returncode != 0
    assert "still running" in backup.stdout + backup.stderr, backup.stdout + backup.stderr
    assert snapname(2) not in zfs_bed.snapshots(f"{s}/data")
    zfs_bed.run("for i in $(seq 60); do [ -s /tmp/restore.rc ] && break; sleep 1; done")
    assert zfs_bed.run("cat /tmp/restore.rc").stdout.strip() == "0", zfs_bed.run(
        "cat /tmp/restore.log"
    ).stdout
    assert zfs_bed.snapshots(f"{s}/data/child") == [snapname(1)]
    after = zfs_bed.tool("rst", target, "--clear-mountpoint", "--allow-empty", now=stamp(2))
    assert after.returncode == 0, after.stdout + after.stderr
    assert snapname(2) in zfs_bed.snapshots(f"{s}/data")


KEY = "file:///root/zfs.key"


def test_encryption_restores_raw_or_decrypted_and_the_next_backup_is_incremental(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """An --encrypt backup of a tree with an encrypted child, into an encrypted vault:
    - the plain parent was encrypted on receiving (the vault's key): it restores
      decrypted, and it was never mounted on the target (its first mount writes to it,
      and zfs would refuse the next incremental receive: 3.3's second run fails);
    - the encrypted child was sent raw: it restores raw, locked until its key is loaded
      (the plan says where it is), with its own properties, not the target's overrides
      (one left out, one put back to the value the source had);
    the files are the backup's, and the next backup is incremental onto both."""
    s, d = pools.src, pools.dst
    zfs_bed.run(
        "echo 'correct horse battery' > /root/zfs.key && "
        f"zfs create -o encryption=on -o keyformat=passphrase -o keylocation={KEY} {d}/vault && "
        f"zfs create {s}/top && zfs create -o encryption=aes-256-gcm -o keyformat=passphrase "
        f"-o keylocation={KEY} -o com.example:note=mine {s}/top/secret && "
        f"zfs set autobackup:rst=true {s}/top"
    )
    zfs_bed.write(f"{s}/top", "f", 64)
    zfs_bed.write(f"{s}/top/secret", "s", 64)
    # (the target's overrides: one over the value the child received from the source)
    options = ["rst", f"{d}/vault", "--encrypt",
               "--set-properties", "com.example:over=target,com.example:note=target"]  # fmt: skip
    run = zfs_bed.tool(*options, now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    names = (f"{s}/top", f"{s}/top/secret")
    copies = {ds: f"{d}/vault/{ds}" for ds in names}
    assert zfs_bed.prop(copies[names[0]], "encryptionroot") == f"{d}/vault"
    assert zfs_bed.prop(copies[names[0]], "mounted") == "no"
    assert zfs_bed.prop(copies[names[1]], "encryptionroot") == copies[names[1]]
    sums = {ds: zfs_bed.checksum(f"{ds}@{snapname(1)}") for ds in names}
    guids = {ds: zfs_bed.guids(copies[ds]) for ds in names}
    zfs_bed.sh("zfs", "destroy", "-r", f"{s}/top")

    args = [*options, f"{s}/top", "--recursive"]
    plan = zfs_bed.tool("plan", "restore", *args)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"zfs load-key {s}/top/secret (keylocation={KEY}, as backed up)" in plan.stdout
    assert "restored decrypted" in plan.stdout
    run = zfs_bed.tool("restore", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {ds: zfs_bed.guids(ds) for ds in names} == guids
    top, secret = names
    assert zfs_bed.prop(top, "encryption") == "off" and zfs_bed.prop(top, "mounted") == "yes"
    assert zfs_bed.prop(secret, "encryption") == "aes-256-gcm"
    assert zfs_bed.prop(secret, "keystatus") == "unavailable"  # (raw: as backed up)
    assert zfs_bed.prop(secret, "keylocation") == KEY
    zfs_bed.sh("zfs", "load-key", secret)
    zfs_bed.sh("zfs", "mount", secret)
    assert {ds: zfs_bed.checksum(ds) for ds in names} == sums
    assert zfs_bed.prop(copies[secret], "com.example:note") == "target"
    assert zfs_bed.prop(secret, "com.example:note") == "mine"  # (put back: -o)
    assert zfs_bed.prop(secret, "com.example:over") == "-"  # (left out: -x)
    assert zfs_bed.prop(top, "autobackup:rst") == "true"

    zfs_bed.write(top, "after", 16)
    zfs_bed.write(secret, "after", 16)
    nxt = zfs_bed.tool(*options, "--verbose", now=stamp(2))
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    assert "receiving full" not in nxt.stdout, nxt.stdout
    for ds in names:
        assert f"{copies[ds]}@{snapname(2)}: receiving incremental" in nxt.stdout, nxt.stdout
        assert zfs_bed.guids(copies[ds])[:1] == guids[ds]
        assert zfs_bed.snapshots(copies[ds]) == [snapname(1), snapname(2)]
    # --raw: the parent too restores raw, beside it, encrypted with the vault's key
    raw = zfs_bed.tool("restore", *options, top, "--raw", "--to", f"{s}/rawtop",
                       "--snapshot", snapname(1))  # fmt: skip
    assert raw.returncode == 0, raw.stdout + raw.stderr
    assert zfs_bed.prop(f"{s}/rawtop", "encryptionroot") == f"{s}/rawtop"
    assert zfs_bed.prop(f"{s}/rawtop", "keystatus") == "unavailable"
    zfs_bed.sh("zfs", "load-key", "-L", KEY, f"{s}/rawtop")
    assert zfs_bed.checksum(f"{s}/rawtop@{snapname(1)}") == sums[top]
