"""Clones on real OpenZFS (issue #20): a selected clone arrives as a clone of its origin,
not as a full copy. (The same rules against the fake zfs: tests/test_clones.py.)
"""

from __future__ import annotations

import pytest

from tests.test_zfs_bookmarks import _base, _sends
from tests.test_zfs_core import snapname, stamp
from tests.zfsvm.bed import Pools, ZfsBed
from tests.zfsvm.guest import LOCAL

pytestmark = pytest.mark.zfs

MODES = {
    "local": [],
    "pull": ["--ssh-source", LOCAL],
    "push": ["--ssh-target", LOCAL],
    "pull+push": ["--ssh-source", LOCAL, "--ssh-target", LOCAL],
}


def _used(zfs_bed: ZfsBed, dataset: str) -> int:
    return int(zfs_bed.prop(dataset, "used"))


def _template(zfs_bed: ZfsBed, base: str, backup: str, size_kb: int, *, create: str = "") -> None:
    zfs_bed.run(f"zfs create {create} {base} && zfs set autobackup:{backup}=true {base}")
    zfs_bed.write(base, "image", size_kb)


def _clone(zfs_bed: ZfsBed, origin: str, clone: str, backup: str) -> None:
    zfs_bed.sh("zfs", "clone", origin, clone)
    zfs_bed.sh("zfs", "set", f"autobackup:{backup}=true", clone)
    zfs_bed.write(clone, "delta", 256)


def test_a_clone_arrives_as_a_clone_and_stores_a_fraction_of_a_full_copy(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """A 16 MiB template and a clone of it that changed 256 KiB: received as a clone,
    the clone's target uses about what changed; with --no-clone, a whole copy."""
    s, d = pools.src, pools.dst
    base, clone = f"{s}/tmpl", f"{s}/vm-101"
    _template(zfs_bed, base, "cl", 16 * 1024)
    zfs_bed.sh("zfs", "snapshot", f"{base}@__base__")  # (as Proxmox names a template's)
    _clone(zfs_bed, f"{base}@__base__", clone, "cl")
    zfs_bed.run(f"zfs create {d}/as-clone && zfs create {d}/full")
    flags = ("--verbose", "--debug", "--exclude-received")
    # (sends side by side, --parallel's default 4: the clone's waits for its origin's)
    run = zfs_bed.tool("cl", f"{d}/as-clone", *flags[::2], now=stamp(1, 1))
    assert run.returncode == 0, run.stdout + run.stderr
    target = f"{d}/as-clone/{clone}"
    assert zfs_bed.prop(target, "origin") == f"{d}/as-clone/{base}@__base__"
    first = snapname("cl", 1, 1)
    assert f"{target}@{first}: receiving incremental (a clone of {base}@__base__)" in run.stdout
    run = zfs_bed.tool("cl", f"{d}/full", "--no-clone", *flags, now=stamp(1, 2))
    assert run.returncode == 0, run.stdout + run.stderr
    full = f"{d}/full/{clone}"
    assert zfs_bed.prop(full, "origin") == "-"
    as_clone, as_copy = _used(zfs_bed, target), _used(zfs_bed, full)
    print(f"\nused of the clone's target: as a clone {as_clone} B, --no-clone {as_copy} B")
    assert as_copy > 16 * 2**20 and as_clone < as_copy / 10, (as_clone, as_copy)
    assert zfs_bed.checksum(target) == zfs_bed.checksum(clone) == zfs_bed.checksum(full)
    # the next runs are incremental on both
    zfs_bed.write(clone, "delta2", 64)
    run = zfs_bed.tool("cl", f"{d}/as-clone", *flags, now=stamp(1, 3))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving full" not in run.stdout
    assert zfs_bed.checksum(target) == zfs_bed.checksum(clone)


# (all --slow: CI proves clones locally here, and each remote mode's transport in
# test_zfs_remote.py; the plan and the commands are the same over ssh)
@pytest.mark.parametrize(
    "mode",
    [pytest.param(mode, marks=pytest.mark.slow) for mode in ("pull", "push", "pull+push")],
)
def test_a_clone_arrives_as_a_clone_in_every_remote_mode(
    zfs_bed: ZfsBed, pools: Pools, mode: str
) -> None:
    """The clone made after the first run, of a snapshot the target has: with
    --strip-path as well."""
    s, d = pools.src, pools.dst
    base, clone = f"{s}/golden", f"{s}/be-2"
    _template(zfs_bed, base, "rc", 1024)
    args = [*MODES[mode], "rc", d, "--strip-path=1", "--exclude-received", "--verbose"]
    run = zfs_bed.tool(*args, now=stamp(1, 1))
    assert run.returncode == 0, run.stdout + run.stderr
    _clone(zfs_bed, f"{base}@{snapname('rc', 1, 1)}", clone, "rc")
    run = zfs_bed.tool(*args, now=stamp(1, 2))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{d}/be-2", "origin") == f"{d}/golden@{snapname('rc', 1, 1)}"
    assert zfs_bed.checksum(f"{d}/be-2") == zfs_bed.checksum(clone)


def test_a_clone_whose_origin_is_not_selected_is_sent_in_full_and_the_plan_says_why(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    s, d = pools.src, pools.dst
    base, clone = f"{s}/lxc-tmpl", f"{s}/ct-200"
    zfs_bed.run(f"zfs create {base}")
    zfs_bed.write(base, "rootfs", 512)
    zfs_bed.sh("zfs", "snapshot", f"{base}@tmpl")
    _clone(zfs_bed, f"{base}@tmpl", clone, "ns")
    plan = zfs_bed.tool("plan", "ns", d, now=stamp(1, 1))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "Clones not received as clones:" in plan.stdout
    assert f"sent in full: its origin {base}@tmpl is not selected" in plan.stdout
    run = zfs_bed.tool("ns", d, now=stamp(1, 1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert zfs_bed.prop(f"{d}/{clone}", "origin") == "-"
    assert zfs_bed.checksum(f"{d}/{clone}") == zfs_bed.checksum(clone)


def test_thinning_never_tries_to_destroy_an_origin_on_either_side(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """--keep-source=1 --keep-target=1 drop the origin snapshot at once on both sides:
    it is kept ("origin of 1 clone"), and no destroy of it is ever attempted."""
    s, d = pools.src, pools.dst
    base, clone = f"{s}/img", f"{s}/img-clone"
    keep = ("--keep-source=1", "--keep-target=1", "--verbose", "--debug")
    _template(zfs_bed, base, "th", 256)
    assert zfs_bed.tool("th", d, *keep, now=stamp(1, 1)).returncode == 0
    origin = snapname("th", 1, 1)
    _clone(zfs_bed, f"{base}@{origin}", clone, "th")
    for hour in (2, 3, 4):
        zfs_bed.write(base, f"more{hour}", 64)
        run = zfs_bed.tool("th", d, *keep, now=stamp(1, hour))
        assert run.returncode == 0, run.stdout + run.stderr
        destroys = [x for x in run.stdout.splitlines() if " CMD > " in x and "zfs destroy" in x]
        assert not [x for x in destroys if f"@{origin}" in x], destroys
        assert "dependent clones" not in run.stdout + run.stderr
    assert zfs_bed.prop(f"{d}/{clone}", "origin") == f"{d}/{base}@{origin}"
    assert origin in zfs_bed.snapshots(base) and origin in zfs_bed.snapshots(f"{d}/{base}")
    plan = zfs_bed.tool("plan", "th", d, *keep[:2], now=stamp(1, 5))
    assert f"{d}/{base}@{origin}  kept: origin of 1 clone: {d}/{clone}" in plan.stdout


@pytest.mark.parametrize("bookmarks", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_after_a_promote_on_the_source_both_go_on_incrementally(
    zfs_bed: ZfsBed, pools: Pools, bookmarks: bool
) -> None:
    """`zfs promote` swaps origin and clone on the source; the guids stay, so both
    chains go on by guid without a full send."""
    s, d = pools.src, pools.dst
    base, clone = f"{s}/be-old", f"{s}/be-new"
    flags = ["--verbose", *([] if bookmarks else ["--no-bookmarks"])]
    _template(zfs_bed, base, "pr", 256)
    assert zfs_bed.tool("pr", d, *flags, now=stamp(1, 1)).returncode == 0
    _clone(zfs_bed, f"{base}@{snapname('pr', 1, 1)}", clone, "pr")
    zfs_bed.write(base, "after", 64)  # (the old one has a snapshot after the clone's origin)
    assert zfs_bed.tool("pr", d, *flags, now=stamp(1, 2)).returncode == 0
    zfs_bed.sh("zfs", "promote", clone)
    assert zfs_bed.prop(base, "origin") == f"{clone}@{snapname('pr', 1, 1)}"
    for hour in (3, 4):
        zfs_bed.write(base, f"b{hour}", 64)
        zfs_bed.write(clone, f"c{hour}", 64)
        run = zfs_bed.tool("pr", d, *flags, now=stamp(1, hour))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "receiving full" not in run.stdout
    for ds in (base, clone):
        assert zfs_bed.checksum(f"{d}/{ds}") == zfs_bed.checksum(ds), ds
        assert zfs_bed.snapshots(f"{d}/{ds}")[-1] == snapname("pr", 1, 4)


def test_promoted_away_is_reported_with_the_fix_and_the_fix_works(
    zfs_bed: ZfsBed, pools: Pools
) -> None:
    """The old origin had no snapshot after the clone's origin: after the promote none
    of its own is on the target. zfs sends from another dataset's snapshot only as a
    clone stream ("cannot receive new filesystem stream: destination ... exists",
    measured): the dataset is reported with the fix, and the fix converges."""
    s, d = pools.src, pools.dst
    base, clone = f"{s}/os", f"{s}/os-new"
    _template(zfs_bed, base, "pa", 256)
    assert zfs_bed.tool("pa", d, now=stamp(1, 1)).returncode == 0
    _clone(zfs_bed, f"{base}@{snapname('pa', 1, 1)}", clone, "pa")
    assert zfs_bed.tool("pa", d, now=stamp(1, 2)).returncode == 0
    zfs_bed.sh("zfs", "promote", clone)
    zfs_bed.write(base, "later", 64)
    run = zfs_bed.tool("pa", d, "--verbose", now=stamp(1, 3))
    assert run.returncode == 1, run.stdout + run.stderr
    fix = f"zfs promote {d}/{clone}, then zfs destroy -r {d}/{base}"
    assert f"{base} was promoted away" in run.stdout + run.stderr
    assert fix in run.stdout + run.stderr
    assert zfs_bed.checksum(f"{d}/{clone}") == zfs_bed.checksum(clone)  # (it went on)
    zfs_bed.sh("zfs", "promote", f"{d}/{clone}")
    zfs_bed.sh("zfs", "destroy", "-r", f"{d}/{base}")
    run = zfs_bed.tool("pa", d, "--verbose", now=stamp(1, 4))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "receiving full" not in run.stdout
    assert zfs_bed.prop(f"{d}/{base}", "origin") == f"{d}/{clone}@{snapname('pa', 1, 1)}"
    assert zfs_bed.checksum(f"{d}/{base}") == zfs_bed.checksum(base)


@pytest.mark.slow  # (CI: a clone as a clone here, raw sends of encrypted datasets in
# test_zfs_bookmarks, test_zfs_remote, test_zfs_restore and test_zfs_verify)
def test_an_encrypted_clone_is_sent_raw_as_a_clone(zfs_bed: ZfsBed, pools: Pools) -> None:
    s, d = pools.src, pools.dst
    zfs_bed.run("echo 'correct horse battery' > /root/zfs.key")
    enc = "-o encryption=aes-256-gcm -o keyformat=passphrase -o keylocation=file:///root/zfs.key"
    base, clone = f"{s}/vault", f"{s}/vault-clone"
    _template(zfs_bed, base, "ec", 1024, create=enc)
    assert zfs_bed.tool("ec", d, now=stamp(1, 1)).returncode == 0
    _clone(zfs_bed, f"{base}@{snapname('ec', 1, 1)}", clone, "ec")
    run = zfs_bed.tool("ec", d, "--verbose", "--debug", now=stamp(1, 2))
    assert run.returncode == 0, run.stdout + run.stderr
    send = next(a for a in _sends(run.stdout) if a[-1].startswith(clone))
    assert "-w" in send and _base(send) == f"-i {base}@{snapname('ec', 1, 1)}", send
    target = f"{d}/{clone}"
    assert zfs_bed.prop(target, "origin") == f"{d}/{base}@{snapname('ec', 1, 1)}"
    assert zfs_bed.prop(target, "encryption") == "aes-256-gcm"
    assert zfs_bed.prop(target, "keystatus") == "unavailable"
    zfs_bed.sh("zfs", "load-key", "-L", "file:///root/zfs.key", f"{d}/{base}")
    zfs_bed.sh("zfs", "mount", target)
    assert zfs_bed.checksum(target) == zfs_bed.checksum(clone)
