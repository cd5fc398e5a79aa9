"""Each plan action as the exact commands that carry it out (argv, never shell text).

snapshot        zfs snapshot [-o P=V]... POOL/A@NAME POOL/B@NAME ...
create-parent   zfs create -p DATASET
abort-resume    zfs recv -A DATASET
rollback        zfs rollback DATASET@SNAP
destroy         zfs destroy DATASET@A,B,C            (split below the argument limit)
hold / release  zfs hold|release TAG DATASET@SNAP
send            zfs send [-L] [-e] [-c] [-w] [-p] [-i @BASE | -t TOKEN] DATASET@SNAP
                | zfs recv -u -s [-x P]... [-o P=V]... [-F] TARGET
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
    Release,
    Rollback,
    Send,
)
from reconcile.job import Job
from reconcile.limits import chunked

#: properties that cannot be set on a volume (zfs refuses the whole receive otherwise)
NOT_FOR_VOLUMES = frozenset({"canmount", "mountpoint"})


@attrs.frozen
class SendFeatures:
    """What both pools support (probed once per run): decides -L and -e."""

    large_blocks: bool = False
    embedded_data: bool = False


def snapshot_argv(action: CreateSnapshots, job: Job) -> list[str]:
    options = [arg for prop in job.snapshot_properties for arg in ("-o", prop)]
    return ["zfs", "snapshot", *options, *(f"{ds}@{action.snapshot}" for ds in action.datasets)]


def create_parent_argv(action: CreateParent) -> list[str]:
    return ["zfs", "create", "-p", action.dataset]


def abort_resume_argv(action: AbortResume) -> list[str]:
    return ["zfs", "recv", "-A", action.dataset]


def rollback_argv(action: Rollback) -> list[str]:
    return ["zfs", "rollback", f"{action.dataset}@{action.snapshot}"]


def destroy_argvs(action: Destroy) -> list[list[str]]:
    """`zfs destroy ds@a,b,c`: many snapshots of one dataset in one command."""
    fixed = len(action.dataset) + 1
    return [
        ["zfs", "destroy", f"{action.dataset}@{','.join(chunk)}"]
        for chunk in chunked(action.snapshots, budget=100_000 - fixed)
    ]


def destroy_dataset_argv(action: DestroyDataset) -> list[str]:
    """Never -r: the dataset has no children and its snapshots are already gone."""
    return ["zfs", "destroy", action.dataset]


def hold_argv(action: Hold) -> list[str]:
    return ["zfs", "hold", action.tag, f"{action.dataset}@{action.snapshot}"]


def release_argv(action: Release) -> list[str]:
    return ["zfs", "release", action.tag, f"{action.dataset}@{action.snapshot}"]


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
    if not job.decrypt:
        argv.append("-p")
    if action.base:
        argv += ["-I" if action.intermediates else "-i", f"@{action.base}"]
    return [*argv, f"{action.source_dataset}@{action.snapshot}"]


def recv_argv(action: Send, job: Job) -> list[str]:
    argv = ["zfs", "recv", "-u", "-s"]
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
