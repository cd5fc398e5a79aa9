"""What a value of the selection property (`autobackup:NAME`) means for one dataset:
the one statement of the rule, for the tool (reconcile.selection, which adds the
options that exclude more) and for the remote guard (executors.guard.rules). Standard
library only, as everything the guard imports.
"""

from __future__ import annotations

from typing import Optional

VALUES = ("true", "false", "child", "parent")
#: what `zfs get` shows for a property that is set nowhere
UNSET = ("-", "")


def refusal(value: str, inherited: bool) -> Optional[str]:
    """Why this value does not select the dataset (None: it does). `inherited`: the
    value is set on an ancestor, not on the dataset itself. An unset or invalid value
    says 'not selected' / 'invalid' (the tool words those itself)."""
    if value in UNSET:
        return "not selected"
    if value not in VALUES:
        return "invalid"
    if value == "child" and not inherited:
        return "only childs"
    if value == "parent" and inherited:
        return "only parent"
    if value == "false":
        return "disabled"
    return None
