"""Plans as tables (tabulate), grouped by host and dataset, with a one-line summary.

Target (local): backup/server1
dataset               action            object                        why
--------------------  ----------------  ----------------------------  ------------------
.../rpool/data        send incremental  @offsite1-20260102 from @...  target keeps it: ...

Plan: 3 snapshots to create, 12 to send, 7 to destroy on source, 9 on target, 2 holds to move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

from tabulate import tabulate

from planner import describe
from planner.actions import (
    SOURCE,
    TARGET,
    Bookmark,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    DestroyDataset,
    Hold,
    Restore,
    Rollback,
    Send,
)
from planner.drift import Change
from planner.plan import CLONE, KEPT, NO_BOOKMARKS, OTHER_BOOKMARKS, RESTORE, Plan
from reconcile import verify

NO_CHANGES = "No changes. Source and target are in sync."


def summary(plan: Plan) -> str:
    if plan.empty and not plan.problems:
        return NO_CHANGES
    snapshots = sum(len(a.datasets) for a in plan.actions if isinstance(a, CreateSnapshots))
    sends = sum(len(a.snapshots) for a in plan.actions if isinstance(a, Send))
    destroy = {SOURCE: 0, TARGET: 0}
    for action in plan.actions:
        if isinstance(action, Destroy):
            destroy[action.side] += len(action.snapshots)
    holds = sum(1 for a in plan.actions if isinstance(a, Hold))
    text = (
        f"Plan: {snapshots} snapshots to create, {sends} to send, {destroy[SOURCE]} to destroy "
        f"on source, {destroy[TARGET]} on target, {holds} holds to move."
    )
    marks = sum(1 for a in plan.actions if isinstance(a, Bookmark))
    unmarks = sum(1 for a in plan.actions if isinstance(a, DestroyBookmark))
    if marks or unmarks:
        text += f" {marks} bookmarks to create, {unmarks} to destroy."
    restores = sum(
        1 for a in plan.actions if isinstance(a, (Restore, Rollback)) and a.side == SOURCE
    )
    if restores:
        text += f" {restores} dataset(s) to restore."
    datasets = sum(1 for a in plan.actions if isinstance(a, DestroyDataset))
    if datasets:
        text += f" {datasets} missing dataset(s) to destroy on target."
    if plan.problems:
        text += f" {len(plan.problems)} dataset(s) can't be processed (see above)."
    return text


def render(
    plan: Plan,
    hosts: Mapping[str, str],
    sizes: Optional[Mapping[int, str]] = None,
) -> str:
    """The whole plan as text: a table per host, problems, and the summary line.

    `hosts`: side -> description ("local", "root@server1"); `sizes`: action index ->
    estimated stream size (adds a column).
    """
    parts = []
    for side in (SOURCE, TARGET):
        rows: list[tuple[str, int, list[str]]] = []
        for index, action in enumerate(plan.actions):
            if action.side == side:
                size = None if sizes is None else sizes.get(index, "")
                for row in describe.rows(action, size):
                    rows.append((row[0], index, row))
        if not rows:
            continue
        rows.sort(key=lambda r: (r[0], r[1]))
        headers = ["dataset", "action", "object", "why"] + (["size"] if sizes is not None else [])
        parts.append(f"{side.heading} ({hosts.get(side, 'local')}):")
        parts.append(tabulate([r[2] for r in rows], headers=headers, tablefmt="simple"))
        parts.append("")
    kept = [[n.side, n.dataset, n.text] for n in plan.notes if n.kind == KEPT]
    if kept:
        parts.append("Kept although the schedule drops them:")
        parts.append(tabulate(kept, headers=["side", "snapshot", "why"], tablefmt="simple"))
        parts.append("")
    plain = [[n.dataset, n.text] for n in plan.notes if n.kind == NO_BOOKMARKS]
    if plain:
        parts.append("Without bookmarks:")
        parts.append(tabulate(plain, headers=["source pool", "why"], tablefmt="simple"))
        parts.append("")
    full = [[n.dataset, n.text] for n in plan.notes if n.kind == CLONE]
    if full:
        parts.append("Clones not received as clones:")
        parts.append(tabulate(full, headers=["source dataset", "why"], tablefmt="simple"))
        parts.append("")
    others = [[n.dataset, n.text] for n in plan.notes if n.kind == OTHER_BOOKMARKS]
    if others:
        parts.append("Bookmarks of other targets:")
        parts.append(tabulate(others, headers=["bookmarks", "kept"], tablefmt="simple"))
        parts.append("")
    restore = [[n.dataset, n.text] for n in plan.notes if n.kind == RESTORE]
    if restore:
        parts.append("Restore:")
        parts.append(tabulate(restore, headers=["dataset", "case, and why"], tablefmt="simple"))
        parts.append("")
    if plan.problems:
        rows2 = [[p.side, p.dataset, p.message] for p in plan.problems]
        parts.append("Can't be processed:")
        parts.append(tabulate(rows2, headers=["side", "dataset", "problem"], tablefmt="simple"))
        parts.append("")
    parts.append(summary(plan))
    return "\n".join(parts)


def drift_table(changes: Sequence[Change]) -> str:
    """What changed since a plan file was made (apply FILE refuses it)."""
    rows = [[c.side, c.dataset, c.change] for c in changes]
    return str(tabulate(rows, headers=["side", "dataset", "changed since the plan"]))


def differences_table(differences: Sequence[Sequence[str]]) -> str:
    """Where a plan file and the plan made now differ: (#, in the file, planned now)."""
    return str(
        tabulate(
            differences, headers=["#", "in the plan file", "planned now"], disable_numparse=True
        )
    )


def verify_table(results: Sequence[verify.Result]) -> str:
    """`verify`: one row per dataset, and under a DIFFERENT one the paths that differ."""
    rows = []
    for r in results:
        rows.append([r.dataset, r.outcome.value, r.detail])
        rows += [["", "", f"  {line}"] for line in r.shown()]
    return str(tabulate(rows, headers=["dataset", "result", "snapshot / why"],
                        disable_numparse=True))  # fmt: skip


def restore_points_table(rows: Sequence[Mapping[str, object]]) -> str:
    """`restore --list`: a backup's snapshots of a dataset, oldest first."""
    if not rows:
        return "No restore points: the copy has no snapshots."
    return str(tabulate([list(r.values()) for r in rows], headers=list(rows[0])))
