"""Each plan action as the exact commands that carry it out (argv, never shell text).

snapshot        zfs snapshot [-o P=V]... POOL/A@NAME POOL/B@NAME ...
create-parent   zfs create -o canmount=off DATASET
abort-resume    zfs recv -A DATASET
rollback        zfs rollback DATASET@SNAP
destroy         zfs destroy DATASET@A,B,C            (split below the argument limit)
                zfs destroy DATASET@A                (one by one, when a batch failed)
hold / release  zfs hold|release TAG DATASET@SNAP
send            zfs send [-L] [-e] [-c] [-w] [-p] [-i @BASE | -t TOKEN] DATASET@SNAP
                | zfs recv -u [-s] [-x P]... [-o P=V]... [-F] TARGET
mount           sh -c MOUNT_SCRIPT sh DATASET        (zfs mount DATASET, where 3.3 would)
"""

from __future__ import annotations

import attrs

from planner.actions import (
    AbortResume,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyDataset,
    Hold,
    Mount,
    Release,
    Rollback,
    Send,
)
from reconcile import zfs_text
from reconcile.errors import ReconcileError
from reconcile.job import Job
from reconcile.limits import chunked

#: properties that cannot be set on a volume (zfs refuses the whole receive otherwise)
NOT_FOR_VOLUMES = frozenset({"canmount", "mountpoint"})


@attrs.frozen
class SendFeatures:
    """What both pools support (probed once per run): decides -L and -e."""

    large_blocks: bool = False
    embedded_data: bool = False
    #: the target pool has extensible_dataset: `zfs recv -s` (resumable) works there
    resumable: bool = False


def snapshot_argv(action: CreateSnapshots, job: Job) -> list[str]:
    options = [arg for prop in job.snapshot_properties for arg in ("-o", prop)]
    return ["zfs", "snapshot", *options, *(f"{ds}@{action.snapshot}" for ds in action.datasets)]


def create_parent_argv(action: CreateParent) -> list[str]:
    return ["zfs", "create", "-o", "canmount=off", action.dataset]


def abort_resume_argv(action: AbortResume) -> list[str]:
    return ["zfs", "recv", "-A", action.dataset]


def rollback_argv(action: Rollback) -> list[str]:
    return ["zfs", "rollback", f"{action.dataset}@{action.snapshot}"]


def destroy_argvs(action: Destroy) -> list[tuple[list[str], list[str]]]:
    """`zfs destroy ds@a,b,c`: many snapshots of one dataset in one command (with the
    snapshots each command destroys)."""
    fixed = len(action.dataset) + 1
    return [
        (["zfs", "destroy", f"{action.dataset}@{','.join(chunk)}"], chunk)
        for chunk in chunked(action.snapshots, budget=100_000 - fixed)
    ]


def single_destroy_argvs(action: Destroy, snapshots: list[str]) -> list[list[str]]:
    """One `zfs destroy ds@a` per snapshot: zfs destroys a batch all or none."""
    return [["zfs", "destroy", f"{action.dataset}@{snap}"] for snap in snapshots]


def destroy_dataset_argv(action: DestroyDataset) -> list[str]:
    """Never -r: the dataset has no children and its snapshots are already gone."""
    return ["zfs", "destroy", action.dataset]


def hold_argv(action: Hold) -> list[str]:
    return ["zfs", "hold", action.tag, f"{action.dataset}@{action.snapshot}"]


def release_argv(action: Release) -> list[str]:
    return ["zfs", "release", action.tag, f"{action.dataset}@{action.snapshot}"]


def is_done(action: Hold | Release, exc: ReconcileError) -> bool:
    """A failed hold (release) whose tag is there (gone) already did what was asked."""
    return zfs_text.hold_already_done(isinstance(action, Hold), str(exc))


#: `sh -c MOUNT_SCRIPT sh DATASET` mounts DATASET where zfs-autobackup 3.3's automount
#: would (a filesystem, canmount=on, a mountpoint that is not legacy/none, its key
#: available, not mounted yet), but never onto a directory that something else is mounted
#: on already (OpenZFS 2.2+ would overlay it: a backup of / or of the source's own
#: mountpoint would hide the live files; `mountpoint -q`, where util-linux has it). It
#: never reads the directory (on a filesystem of the backup that would change its atime,
#: and so the backup), says why it did not mount, and never fails. (`zfs get all`, as
#: 3.3: a zfs without encryption has no keystatus to ask for.)
MOUNT_SCRIPT = (
    'zfs get -H -o property,value all "$1" |'
    " { tab=$(printf '\\t'); while IFS=$tab read -r p v; do case $p in"
    " type) t=$v;; canmount) c=$v;; mountpoint) m=$v;; encryption) e=$v;;"
    " keystatus) k=$v;; mounted) d=$v;; esac; done;"
    ' [ "$t" = filesystem ] && [ "$d" = no ] && [ "$c" = on ] || exit 0;'
    " case $m in legacy|none) exit 0;; esac;"
    ' [ "${e:-off}" = off ] || [ "$k" != unavailable ] || exit 0;'
    ' if command -v mountpoint >/dev/null 2>&1 && mountpoint -q "$m"; then'
    ' echo "not mounted: something else is mounted on $m"; exit 0; fi;'
    ' zfs mount "$1" || echo "not mounted: zfs mount failed"; }'
)


def mount_argv(action: Mount) -> list[str]:
    return ["sh", "-c", MOUNT_SCRIPT, "sh", action.dataset]


def send_argv(action: Send, job: Job, features: SendFeatures, progress: bool = False) -> list[str]:
    argv = ["zfs", "send"]
    if progress:
        argv.append("-P")  # the size estimate on stderr; never -v (a second per send)
    if features.large_blocks:
        argv.append("-L")
    if features.embedded_data and not action.raw and not job.encrypt:
        argv.append("-e")
    if job.zfs_compressed:
        argv.append("-c")
    if action.raw:
        argv.append("-w")
    if action.resume_token:
        return [*argv, "-t", action.resume_token]
    if not action.decrypted:
        argv.append("-p")
    if action.base:
        argv += ["-I" if action.intermediates else "-i", f"@{action.base}"]
    return [*argv, f"{action.source_dataset}@{action.snapshot}"]


def recv_argv(action: Send, job: Job, features: SendFeatures) -> list[str]:
    argv = ["zfs", "recv", "-u", *(["-s"] if features.resumable else [])]
    filters = list(job.filter_properties)
    sets = list(job.set_properties)
    if job.encrypt and not action.raw:
        filters += ["keylocation", "pbkdf2iters", "keyformat", "encryption"]
    if action.volume:
        filters = [p for p in filters if p not in NOT_FOR_VOLUMES]
        sets = [p for p in sets if p.split("=", 1)[0] not in NOT_FOR_VOLUMES]
    for prop in filters:
        argv += ["-x", prop]
    for prop in sets:
        argv += ["-o", prop]
    if action.force:
        argv.append("-F")
    return [*argv, action.target_dataset]
