"""What each action is, in words: the rows of the plan table and the lines of the v3 log.

Both descriptions of an action live here, side by side, so that a new action type is
described once for `plan` (planner.show's table) and once for the run's log (the lines a
compiled step carries: executors print them, and never look at the action). Each
dispatch over the action types ends in `assert_never`: mypy names this module when an
action type is added and not described. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Optional

import attrs

from planner.actions import (
    AbortResume,
    Action,
    Bookmark,
    CreateParent,
    CreateSnapshots,
    Destroy,
    DestroyBookmark,
    DestroyDataset,
    Hold,
    Mount,
    Release,
    Restore,
    Rollback,
    Send,
    SetProperty,
)
from reconcile.never import assert_never


def rows(action: Action, size: Optional[str]) -> list[list[str]]:
    """(dataset, action, object, why[, size]) rows of the plan table for one action."""
    extra = [size or ""] if size is not None else []
    if isinstance(action, CreateSnapshots):
        return [
            [ds, "snapshot", f"@{action.snapshot}", action.reason, *extra] for ds in action.datasets
        ]
    if isinstance(action, Send):
        mark = "#" if action.from_bookmark else "" if action.from_origin else "@"
        what = f"@{action.snapshot}" + (f" from {mark}{action.base}" if action.base else "")
        if action.from_bookmark:
            what += " (a bookmark)"
        if action.from_origin:
            what += " (its origin: received as a clone)"

        if action.intermediates:
            what += f" (-I: {len(action.snapshots)} snapshots in one stream)"
        verb = {"full": "send full", "incremental": "send incremental", "resume": "resume send"}
        return [[action.target_dataset, verb[action.mode], what, action.reason, *extra]]
    if isinstance(action, Destroy):
        return [
            [action.dataset, "destroy", f"@{snap}", why, *extra]
            for snap, why in zip(action.snapshots, action.reasons)
        ]
    if isinstance(action, (Hold, Release)):
        what = f"@{action.snapshot} ({action.tag})"
        return [[action.dataset, action.kind, what, action.reason, *extra]]
    if isinstance(action, Bookmark):
        what = f"#{action.bookmark} of {_bookmarked(action)}"
        return [[action.dataset, "bookmark", what, action.reason, *extra]]
    if isinstance(action, DestroyBookmark):
        return [[action.dataset, "destroy bookmark", f"#{action.bookmark}", action.reason, *extra]]
    if isinstance(action, Rollback):
        what = f"to @{action.snapshot}" + (" (-r)" if action.destroy_newer else "")
        return [[action.dataset, "rollback", what, action.reason, *extra]]
    if isinstance(action, Restore):
        what = f"{action.copy}@{action.snapshot}" + (f" from @{action.base}" if action.base else "")
        if action.raw:
            what += " (raw)"
        how = "restore incremental" if action.base else "restore full"
        return [[action.dataset, how, what, action.reason, *extra]]
    if isinstance(action, SetProperty):
        what = f"{action.property}={action.value}"
        return [[action.dataset, "set", what, action.reason, *extra]]
    if isinstance(action, (CreateParent, AbortResume, DestroyDataset, Mount)):
        return [[action.dataset, action.kind, "", action.reason, *extra]]
    return assert_never(action)


def one_line(action: Action) -> str:
    """One line for an action: side, dataset, what, object."""
    return "; ".join(
        f"{action.side} {row[0]}: {row[1]} {row[2]}".rstrip() for row in rows(action, None)
    )


class Level(enum.Enum):
    """How loud a log line is (the console's --verbose and --debug)."""

    VERBOSE = "verbose"
    DEBUG = "debug"


@attrs.frozen
class Line:
    """A line of the v3 log, said when the step that carries the action starts."""

    level: Level
    text: str


def _bookmarked(action: Bookmark) -> str:
    return f"#{action.copy_of}" if action.copy_of is not None else f"@{action.snapshot}"


def log_lines(action: Action, about: Sequence[str] = ()) -> tuple[Line, ...]:
    """The v3 log's lines for `action` (as zfs-autobackup 3.3 words them). `about`: the
    snapshots (DATASET@SNAP) the step destroys, for a destroy split over commands."""
    say = Level.VERBOSE
    if isinstance(action, CreateSnapshots):
        return (
            Line(
                say,
                f"{action.side.label} Creating snapshots {action.snapshot} in pool {action.pool}",
            ),
        )
    if isinstance(action, CreateParent):
        return (Line(say, f"{action.side.label} {action.dataset}: Creating unmountable parent"),)
    if isinstance(action, AbortResume):
        return (Line(say, f"{action.side.label} {action.dataset}: {action.reason}"),)
    if isinstance(action, Rollback):
        return (
            Line(say, f"{action.side.label} {action.dataset}: Rolling back to @{action.snapshot}"),
        )
    if isinstance(action, DestroyDataset):
        return (Line(say, f"{action.side.label} {action.dataset}: Destroying (missing on source)"),)
    if isinstance(action, Send):
        what = {"full": "receiving full", "incremental": "receiving incremental",
                "resume": "resuming"}[action.mode]  # fmt: skip
        if action.from_bookmark:
            what += " (from bookmark)"
        if action.from_origin:
            what += f" (a clone of {action.base})"
        return tuple(
            Line(say, f"{action.side.label} {action.target_dataset}@{snap}: {what}")
            for snap in action.snapshots
        )
    if isinstance(action, Destroy):
        return tuple(Line(say, f"{action.side.label} {name}: Destroying") for name in about)
    if isinstance(action, Bookmark):
        name = f"{action.dataset}#{action.bookmark}"
        return (
            Line(
                say,
                f"{action.side.label} {name}: Bookmarking {_bookmarked(action)} ({action.reason})",
            ),
        )
    if isinstance(action, DestroyBookmark):
        name = f"{action.dataset}#{action.bookmark}"
        return (Line(say, f"{action.side.label} {name}: Destroying bookmark ({action.reason})"),)
    if isinstance(action, (Hold, Release)):
        # (3.3's word, "releaseing" included)
        name = f"{action.dataset}@{action.snapshot}"
        return (Line(Level.DEBUG, f"{action.side.label} {name}: {action.kind}ing"),)
    if isinstance(action, Mount):
        return ()
    if isinstance(action, Restore):
        how = f"incremental from @{action.base}" if action.base else "full"
        text = f"{action.copy}@{action.snapshot}: restoring ({how})"
        return (Line(say, f"{action.side.label} {action.dataset}: {text}"),)
    if isinstance(action, SetProperty):
        text = f"setting {action.property}={action.value} ({action.reason})"
        return (Line(say, f"{action.side.label} {action.dataset}: {text}"),)
    return assert_never(action)


def subject(action: Action) -> str:
    """What an action's messages name: its dataset, or a snapshot's pool."""
    if isinstance(action, CreateSnapshots):
        return f"pool {action.pool}"
    return action.dataset


#: where a complaint names the error
WHY = "{why}"


def complaint(action: Action, about: Sequence[str], *, soft: bool) -> str:
    """What a failure of the step that carries `action` says, with WHY for the error.
    `soft`: the failure blocks nothing (a thinning destroy, a release, a mount)."""
    label = action.side.label
    if not soft:
        return f"{label} {subject(action)}: FAILED: {WHY}"
    if isinstance(action, (Destroy, DestroyBookmark)):
        return f"{label} {', '.join(about)}: can't destroy it ({WHY}); the backup goes on"
    if isinstance(action, Release):
        name = f"{action.dataset}@{action.snapshot}"
        return f"{label} {name}: can't release {action.tag} ({WHY}); the backup goes on"
    return f"{label} {subject(action)}: can't {action.kind} it ({WHY})"
