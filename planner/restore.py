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
from reconcile.restore import Case, RestoreDesire, restore_tag


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
        notes += [Note(SOURCE, unit, text, RESTORE) for text in _notes(job, desire, tag)]
        if desire.case is Case.CURRENT:
            continue
        copy, snap = desire.copy.name, desire.snapshot
        # (after the nearest ancestor restored with it: a child needs its parent)
        above = max((d for d in made if unit.startswith(d + "/")), key=len, default=None)
        last = made.get(above) if above is not None else None
        if not desire.held_already:
            held = Hold(TARGET, copy, snap, tag, unit, "kept while it is restored")
            last = build.add(held, [last], phase=PREPARE)
        start = last
        for name in desire.release_first:
            why = "destroyed by the restore (zfs destroys no held snapshot)"
            gone = Release(SOURCE, unit, name, job.naming.hold_tag, unit, why)
            last = build.add(gone, [last], phase=PREPARE)
        if desire.case is Case.ROLLBACK:
            assert desire.base is not None
            lost = [f"@{s}" for s in desire.lost] + [f"#{b}" for b in desire.lost_bookmarks]
            why = "--force" + (f": destroys {', '.join(lost)}" if lost else "")
            rollback = Rollback(unit, desire.base, unit, why, side=SOURCE, destroy_newer=bool(lost))
            last = build.add(rollback, [last])
        else:
            base = desire.base if desire.case is Case.INCREMENTAL else None
            volume = desire.copy.type == "volume"
            restore = Restore(copy, snap, unit, unit, desire.why, base=base, raw=desire.raw,
                              decrypted=desire.decrypted, volume=volume,
                              leave_out=desire.leave_out, put_back=desire.put_back)  # fmt: skip
            last = build.add(restore, [last])
        made[unit] = last
        done = [last]
        if desire.selection is not None and not desire.beside:
            prop = job.naming.property_name
            done.append(build.add(SetProperty(unit, prop, desire.selection, unit,
                                              "as it was on the source"), [last]))  # fmt: skip
        if desire.case is Case.FULL and desire.copy.type != "volume":
            # (after its parent's: a parent mounted later would hide it)
            mount = Mount(unit, unit, "restored", side=SOURCE)
            mounts[unit] = build.add(mount, [last, mounts.get(above or "")])
            done.append(mounts[unit])
        if not desire.held_already:
            # (last: it runs whatever failed before it)
            release = Release(TARGET, copy, snap, tag, unit, "restored", always=True)
            build.add(release, [*done, start], phase=AFTER)
    return build.finish(problems, notes, None)


def _notes(job: Job, desire: RestoreDesire, tag: str) -> list[str]:
    """What the user should know about a dataset's restore besides its case."""
    notes = []
    if desire.newer:
        notes.append(_newer_note(desire))
    if desire.raw:
        notes.append(_key_note(desire))
    if desire.decrypted:
        notes.append(
            "restored decrypted (--encrypt): zfs sends no properties of an encrypted dataset "
            "unless raw, so it gets the defaults and its parent's; set them again"
        )
    if desire.held_already:
        notes.append(
            f"@{desire.snapshot} carries {tag} already (an earlier restore that did not end): "
            f"kept; zfs release {tag} {desire.copy.name}@{desire.snapshot} when no restore runs"
        )
    if desire.selection is not None and desire.beside:
        prop = job.naming.property_name
        notes.append(
            f"beside the original, {prop}={desire.selection} stays a received value: the next "
            f"backup sends this copy too, unless --exclude-received, or zfs set {prop}=false on it"
        )
    return notes


def _newer_note(desire: RestoreDesire) -> str:
    count = len(desire.newer)
    return (
        f"the backup has {count} snapshot(s) after @{desire.snapshot} (up to "
        f"@{desire.newer[-1]}): the next backup finds them incompatible with the restored "
        "dataset and stops there, unless it runs with --destroy-incompatible (see docs/restore.md)"
    )


def _key_note(desire: RestoreDesire) -> str:
    where = desire.keylocation
    if where is None or where == "none":
        # (--raw of a copy an --encrypt backup encrypted: it becomes an encryption root)
        key = (
            f"zfs load-key {desire.destination} (keylocation=prompt: the passphrase of the "
            "key that encrypted it on the backup server)"
        )
    elif where == "prompt":
        key = f"zfs load-key {desire.destination} (keylocation=prompt: it asks for the passphrase)"
    else:
        key = f"zfs load-key {desire.destination} (keylocation={where}, as backed up)"
    return (
        "restored raw (encrypted with the source's key, as backed up): it is locked until "
        f"its key is loaded; load {key}, then zfs mount it"
    )
