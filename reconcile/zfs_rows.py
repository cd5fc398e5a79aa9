"""zfs output rows the remote guard reads as well as the tool: standard library only
(reconcile.zfs_text, the one place for zfs' text, re-exports them).
"""

from __future__ import annotations

from typing import Optional


def parse_resume_info(text: str) -> tuple[Optional[str], Optional[int]]:
    """(toname, toguid) from `zfs send -nv -t TOKEN` output (stdout or stderr)."""
    toname = toguid = None
    for line in text.split("\n"):
        key, sep, value = line.strip().partition(" = ")
        if not sep:
            continue
        if key == "toname":
            toname = value.strip()
        elif key == "toguid":
            toguid = int(value.strip(), 0)
    return toname, toguid


def plain_resume_info(text: str) -> bool:
    """`zfs send -nv -t` printed one toname, one toguid and one line of what it sends:
    zfs prints the token's strings as they are, so a toname with a newline in it could
    add lines of its own (a second toguid, a second "full send of")."""
    lines = [row.strip() for row in text.split("\n")]
    counts = [
        sum(line.startswith(prefix) for line in lines)
        for prefix in ("toname = ", "toguid = ", "full send of ", "send from ")
    ]
    return counts[0] == counts[1] == 1 and counts[2] + counts[3] == 1


def resume_sends(text: str, toname: str) -> Optional[str]:
    """The snapshot `zfs send -nv -t TOKEN` says it sends ("full send of X", "send from
    Y to X", each maybe followed by " estimated size is N"), None when it says none.
    `toname` (the token's) is preferred where a name with " to " makes it ambiguous."""
    for row in text.split("\n"):
        line = row.strip().split(" estimated size is ", 1)[0]
        if line.startswith("full send of "):
            return line[len("full send of ") :]
        if line.startswith("send from "):
            if line.endswith(" to " + toname):
                return toname
            return line.rpartition(" to ")[2]
    return None


def property_row(text: str, dataset: str) -> Optional[tuple[str, str]]:
    """(value, source) of `dataset` from `zfs get -H -o name,value,source PROP DATASET`."""
    for line in text.split("\n"):
        cols = line.split("\t")
        if len(cols) == 3 and cols[0] == dataset:
            return cols[1], cols[2]
    return None
