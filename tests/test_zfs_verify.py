"""verify on real OpenZFS (#35): the data itself, compared both ways.

- a fresh backup verifies (a filesystem with a directory, a symlink, an xattr, a 1 GiB
  sparse file whose holes are not read, and a volume), in local, pull and push mode; then a
  target snapshot that has the source snapshot's name but other content (made by hand,
  paired by name as --no-guid-check does) is DIFFERENT, with the changed, extra and
  missing paths, for the filesystem and for the volume;
- an encrypted copy whose key is not loaded is "not verifiable" (exit 3), never
  verified; with its key loaded it verifies;
- a target pool whose backing file was damaged under a received file: the read error is
  a difference (exit 1), never "verified";
- SIGTERM during a verification leaves no mount, directory, hold or property behind.

After each, nothing of the verification is left: no mount or directory of ours, no
verify hold, `snapdev` as it was.
"""

from __future__ import annotations

import json
import shlex

import pytest

from tests.zfsvm.bed import POOL_DIR, Pools, ZfsBed
from tests.zfsvm.guest import LOCAL

pytestmark = pytest.mark.zfs

MODES = {"local": [], "pull": ["--ssh-source", LOCAL], "push": ["--ssh-target", LOCAL]}
PREFIX = "zfs-autobackup-verify."


def stamp(hour: int) -> str:
    return f"2026-01-01 {hour:02d}:00:00"


def _leftovers(bed: ZfsBed, pools: Pools) -> list[str]:
    """What a verification could leave behind: its mounts and directories, its holds,
    a `snapdev` set."""
    out = bed.run(
        f"grep {PREFIX} /proc/mounts; ls -d /tmp/{PREFIX}* 2>/dev/null; "
        f"zfs get -H -o name,value -s local snapdev -r {' '.join(pools.names)}; true"
    ).stdout
    found = out.splitlines()
    found += [h for h in bed.all_holds(*pools.names).splitlines() if ":verify" in h]
    return found


def _results(stdout: str) -> dict[str, dict[str, object]]:
    return {r["dataset"]: r for r in json.loads(stdout)}


def _tree(bed: ZfsBed, dataset: str) -> None:
    """A directory, a symlink, an xattr, a private file, and a 1 GiB sparse file."""
    mnt = bed.prop(dataset, "mountpoint")
    bed.run(
        f"cd {mnt} && mkdir sub && echo one > sub/a && echo two > gone && echo three > same "
        "&& ln -s sub/a link && chmod 600 same "
        "&& python3 -c \"import os; os.setxattr('same', 'user.note', b'kept')\" "
        f"&& truncate -s 1G sparse && echo tail >> sparse && zpool sync {dataset.split('/', maxsplit=1)[0]}"
    )


# (CI runs local; pull and push with --slow)
@pytest.mark.parametrize(
    "mode", [m if m == "local" else pytest.param(m, marks=pytest.mark.slow) for m in MODES]
)
def test_a_backup_verifies_and_a_forged_snapshot_is_different(
    zfs_bed: ZfsBed, pools: Pools, mode: str
) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.sh("zfs", "create", f"{s}/data")
    _tree(zfs_bed, f"{s}/data")
    zfs_bed.sh("zfs", "create", "-V", "16M", f"{s}/vol")
    zfs_bed.run(f"udevadm settle && dd if=/dev/urandom of=/dev/zvol/{s}/vol bs=64k count=64 "
                f"status=none && zpool sync {s}")  # fmt: skip
    zfs_bed.sh("zfs", "set", "autobackup:vfy=true", s)
    run = zfs_bed.tool(*MODES[mode], "vfy", d, "--clear-mountpoint", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr

    run = zfs_bed.tool("verify", *MODES[mode], "vfy", d, "--json", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    results = _results(run.stdout)
    assert {k: r["outcome"] for k, r in results.items()} == {
        s: "verified", f"{s}/data": "verified", f"{s}/vol": "verified"
    }  # fmt: skip
    data = results[f"{s}/data"]
    # (the paths compared: ., sub, sub/a, gone, same, link, sparse)
    assert data["paths"] == 7, data
    # the holes of the 1 GiB sparse file were not read, on either side
    assert int(data["skipped"]) > 2 * (2**30 - 2**20), data  # type: ignore[call-overload]
    assert int(data["read"]) < 2**22, data  # type: ignore[call-overload]
    assert _leftovers(zfs_bed, pools) == []
    # recorded on the copy, read by status; and the next backup is incremental all the same
    copy = f"{d}/{s}/data"
    assert zfs_bed.prop(copy, "autobackup:vfy:verified").endswith(" @vfy-20260101010000")
    status = zfs_bed.tool("status", *MODES[mode], "vfy", d, "--verify-max-age", "7d",
                          "--format", "json", now=stamp(2))  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    rows = json.loads(status.stdout)["datasets"]
    assert {r["verified"]["snapshot"] for r in rows} == {"vfy-20260101010000"}, rows
    zfs_bed.write(f"{s}/data", "more", 16)
    run = zfs_bed.tool(*MODES[mode], "vfy", d, "--clear-mountpoint", "--verbose", now=stamp(2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{copy}@vfy-20260101020000: receiving incremental" in run.stdout, run.stdout
    assert zfs_bed.prop(copy, "autobackup:vfy:verified").endswith(" @vfy-20260101010000")

    # forged: the copies get a snapshot of the source's next name, with other content
    vol = f"{d}/{s}/vol"
    zfs_bed.run(
        f"zfs set mountpoint=/mnt/forge {copy} && zfs mount {copy} && cd /mnt/forge && "
        "echo changed > sub/a && rm gone && echo new > extra && cd / && "
        f"zfs umount {copy} && zfs snapshot {copy}@forged && "
        f"dd if=/dev/urandom of=/dev/zvol/{vol} bs=64k count=1 seek=3 conv=notrunc status=none "
        f"&& zpool sync {d} && zfs snapshot {vol}@forged && "
        f"zfs snapshot {s}/data@forged {s}/vol@forged"
    )
    run = zfs_bed.tool("verify", *MODES[mode], "vfy", d, "--no-guid-check", "--progress")
    assert run.returncode == 1, run.stdout + run.stderr
    # (progress: the bytes read of the source snapshots' logical size, both sides)
    assert "verify: 100% " in run.stderr and " of " in run.stderr, run.stderr
    table = run.stdout
    assert "DIFFERENT" in table and "@forged" in table, table
    for line in ("extra: only on target", "gone: only on source",
                 "sub/a: size, mtime, contents", ".: mtime"):  # fmt: skip
        assert line in table, table
    # the volume: its contents (one row: the device)
    rows = [line.split() for line in table.splitlines()]
    vol_row = next(i for i, r in enumerate(rows) if r and r[0] == f"{s}/vol")
    assert rows[vol_row][1] == "DIFFERENT" and rows[vol_row + 1] == [".:", "contents"], table
    # the unchanged parts still match: `same` (mode 600, its xattr), link, sparse
    for path in ("same", "link", "sparse", "sub:"):
        assert f" {path}" not in table, table
    assert _leftovers(zfs_bed, pools) == []


def test_an_encrypted_copy_is_verifiable_only_with_its_key(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    key = f"/root/{s}-verify.key"
    zfs_bed.run(f"echo verifypassphrase > {key}")
    zfs_bed.sh("zfs", "create", "-o", "encryption=on", "-o", "keyformat=passphrase",
               "-o", f"keylocation=file://{key}", f"{s}/secret")  # fmt: skip
    zfs_bed.write(f"{s}/secret", "file", 64)
    zfs_bed.sh("zfs", "set", "autobackup:vfy=true", f"{s}/secret")
    run = zfs_bed.tool("vfy", d, now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    copy = f"{d}/{s}/secret"
    assert zfs_bed.prop(copy, "keystatus") == "unavailable"  # (sent raw)

    run = zfs_bed.tool("verify", "vfy", d, "--json")
    assert run.returncode == 3, run.stdout + run.stderr
    result = _results(run.stdout)[f"{s}/secret"]
    assert result["outcome"] == "not verifiable", result
    assert "key is not loaded" in str(result["detail"]), result
    assert "each of its 1 snapshots is one of the source's" in str(result["detail"]), result
    assert result["read"] == 0, result

    zfs_bed.sh("zfs", "load-key", copy)
    run = zfs_bed.tool("verify", "vfy", d, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert _results(run.stdout)[f"{s}/secret"]["outcome"] == "verified"
    assert _leftovers(zfs_bed, pools) == []


def test_a_damaged_target_is_a_difference_never_verified(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.sh("zfs", "create", f"{s}/data")
    zfs_bed.write(f"{s}/data", "victim", 1024)
    zfs_bed.write(f"{s}/data", "fine", 16)
    zfs_bed.sh("zfs", "set", "autobackup:vfy=true", f"{s}/data")
    run = zfs_bed.tool("vfy", d, "--clear-mountpoint", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    # the first data block of the received file (its object number is the source's
    # inode), overwritten in the pool's backing file past the labels (4 MiB)
    copy = f"{d}/{s}/data"
    obj = zfs_bed.run(f"stat -c %i {zfs_bed.prop(f'{s}/data', 'mountpoint')}/victim").stdout
    dva = zfs_bed.run(
        f"zdb -e -p {POOL_DIR} -ddddd {copy} {obj.strip()} | awk '/ L0 /{{print $3; exit}}'"
    ).stdout.strip()
    offset = int(dva.split(":")[1], 16)
    zfs_bed.run(
        f"zpool export {d} && dd if=/dev/urandom of={POOL_DIR}/{d}.img bs=512 count=16 "
        f"seek={(0x400000 + offset) // 512 + 8} conv=notrunc status=none && "
        f"zpool import -d {POOL_DIR} {d}"
    )
    run = zfs_bed.tool("verify", "vfy", d)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "DIFFERENT" in run.stdout, run.stdout
    assert "victim: unreadable on target: EIO" in run.stdout, run.stdout
    assert "fine" not in run.stdout, run.stdout
    assert "verified" not in run.stdout.split("Verify:")[0], run.stdout
    assert _leftovers(zfs_bed, pools) == []


# (CI: local; pull, whose walks run over ssh, with --slow)
@pytest.mark.parametrize("mode", ["local", pytest.param("pull", marks=pytest.mark.slow)])
def test_sigterm_leaves_nothing_behind(zfs_bed: ZfsBed, pools: Pools, mode: str) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.sh("zfs", "create", f"{s}/data")
    zfs_bed.write(f"{s}/data", "big", 48 * 1024)
    zfs_bed.sh("zfs", "create", "-V", "32M", f"{s}/vol")
    zfs_bed.sh("zfs", "set", "autobackup:vfy=true", f"{s}/data", f"{s}/vol")
    run = zfs_bed.tool("vfy", d, "--clear-mountpoint", now=stamp(1))
    assert run.returncode == 0, run.stdout + run.stderr
    # (--parallel 2: the filesystem is mounted and the volume's snapdev set when it comes)
    out = zfs_bed.run(
        f"zfs-autobackup verify {shlex.join(MODES[mode])} vfy {shlex.quote(d)} --parallel 2 "
        "> /tmp/verify.out 2>&1 & "
        f"pid=$!; for i in $(seq 600); do grep -q {PREFIX} /proc/mounts && "
        f'[ "$(zfs get -H -o value snapdev {d}/{s}/vol)" = visible ] && break; sleep 0.1; done; '
        "sleep 0.3; kill -TERM $pid; wait $pid; echo rc=$?; cat /tmp/verify.out",
        check=False,
    ).stdout
    assert "rc=3" in out, out
    assert "Aborted" in out, out
    assert _leftovers(zfs_bed, pools) == [], out
    # no walk goes on reading (a remote one: its ssh channel closed)
    assert zfs_bed.run("pgrep -f 'import [s]elect' || true").stdout == "", out
