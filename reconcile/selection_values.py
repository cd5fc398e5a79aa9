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


#: zfs' word for a property's source when the value is set on an ancestor
INHERITED_PREFIX = "inherited from "


def inherited_from(source: str) -> Optional[str]:
    """The dataset a value is inherited from, by zfs' source word ("inherited from
    POOL/DS"); None when the value is set on the dataset itself (or nowhere)."""
    return source[len(INHERITED_PREFIX) :] if source.startswith(INHERITED_PREFIX) else None


def received_refusal(origin_source: str, exclude_received: bool) -> Optional[str]:
    """`--exclude-received`: a value received (or inherited from a received one:
    `origin_source` is the source where the value is set) does not select."""
    return "dataset already received" if exclude_received and origin_source == "received" else None
