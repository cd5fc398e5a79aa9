"""A restore's plan, from its desires (reconcile.restore): per dataset, in order,

    hold the copy's snapshot (the restore's own tag: a backup run can't thin it)
    -> [--force: zfs rollback -r to the common snapshot]
    -> the send back (full, or incremental from the common snapshot)
    -> the selection property, set again as it was (received, it looks like a replica)
    -> the mount check (a filesystem: mounted where it was, never over something in use)
    -> release the hold (whatever failed before)

A refused dataset is a problem that names its case; the others go on. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from planner.actions import SOURCE, TARGET, Hold, Mount, Release, Restore, Rollback, SetProperty
from planner.plan import AFTER, PREPARE, RESTORE, Note, Plan, Problem, builder
from reconcile.job import Job
from reconcile.restore import Case, RestoreDesire


def restore_tag(job: Job) -> str:
    """The hold tag of a restore: the backup's own, marked (a backup run keeps a snapshot
    someone else holds, and never releases this tag)."""
    return f"{job.naming.hold_tag}:restore"


def build_restore_plan(job: Job, desires: Sequence[RestoreDesire]) -> Plan:
    build = builder()
    problems: list[Problem] = []
    notes: list[Note] = []
    tag = restore_tag(job)
    made: dict[str, int] = {}
    mounts: dict[str, int] = {}
    for desire in desires:
        unit = desire.destination
        notes.append(Note(SOURCE, unit, f"{desire.case.value}: {desire.why}", RESTORE))
        if desire.case is Case.REFUSED:
            problems.append(Problem(unit, SOURCE, unit, f"Can't restore: {desire.why}"))
            continue
        if desire.newer:
            notes.append(Note(SOURCE, unit, _newer_note(desire), RESTORE))
        if desire.raw:
            notes.append(Note(SOURCE, unit, _key_note(desire), RESTORE))
        if desire.case is Case.CURRENT:
            continue
        copy, snap = desire.copy.name, desire.snapshot
        parent_name = unit.rsplit("/", 1)[0]
        parent = made.get(parent_name)
        hold = build.add(Hold(TARGET, copy, snap, tag, unit, "kept while it is restored"),
                         [parent], phase=PREPARE)  # fmt: skip
        last = hold
        if desire.base is not None:
            why = (
                "--force: " + ", ".join(f"@{s}" for s in desire.lost) if desire.lost else "--force"
            )
            last = build.add(
                Rollback(
                    unit, desire.base, unit, why, side=SOURCE, destroy_newer=bool(desire.lost)
                ),
                [last],
            )
        if desire.case is not Case.ROLLBACK:
            base = desire.base if desire.case is Case.INCREMENTAL else None
            volume = desire.copy.type == "volume"
            last = build.add(
                Restore(
                    copy, snap, unit, unit, desire.why, base=base, raw=desire.raw, volume=volume
                ),
                [last],
            )
        made[unit] = last
        done = [last]
        if desire.selection is not None:
            prop = job.naming.property_name
            done.append(build.add(SetProperty(unit, prop, desire.selection, unit,
                                              "as it was on the source"), [last]))  # fmt: skip
        if desire.case is Case.FULL and desire.copy.type != "volume":
            # (after its parent's: a parent mounted later would hide it)
            mount = Mount(unit, unit, "restored", side=SOURCE)
            mounts[unit] = build.add(mount, [last, mounts.get(parent_name)])
            done.append(mounts[unit])
        # (last: it runs whatever failed before it)
        release = Release(TARGET, copy, snap, tag, unit, "restored", always=True)
        build.add(release, done, phase=AFTER)
    return build.finish(problems, notes, None)


def _newer_note(desire: RestoreDesire) -> str:
    count = len(desire.newer)
    return (
        f"the backup has {count} snapshot(s) after @{desire.snapshot} (up to "
        f"@{desire.newer[-1]}): the next backup finds them incompatible with the restored "
        "dataset and stops there, unless it runs with --destroy-incompatible (see docs/restore.md)"
    )


def _key_note(desire: RestoreDesire) -> str:
    return (
        f"restored raw (encrypted with the source's key, as backed up): load its key with "
        f"zfs load-key {desire.destination} (keylocation as it was on the source) to mount it"
    )
