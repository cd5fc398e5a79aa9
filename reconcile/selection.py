"""Selection: which source datasets the backup takes, and why. Pure.

As zfs-autobackup 3.3, from the value and source of the selection property
(`autobackup:NAME`) on every filesystem and volume:

- `true` selects the dataset and (by inheritance) its descendants;
- `child` selects only the descendants; `parent` only the dataset itself;
- `false` deselects (and is inherited too); no value ("-") means not part of this backup;
- a value inherited from a *received* value counts as received: `--exclude-received`
  ignores those; datasets under an excluded path (the target path, when source and
  target are the same host) are ignored; `--exclude-unchanged N` ignores datasets with
  fewer than N bytes written since their newest snapshot.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import attrs

from reconcile import selection_values
from reconcile.model import Selection
from reconcile.zfs_names import under

VALUES = selection_values.VALUES


@attrs.frozen
class Choice:
    dataset: str
    selected: bool
    #: the short reason, as printed in parentheses ("direct selection", "disabled", ...)
    reason: str
    #: True: only worth a debug line (not set at all, or an excluded path)
    quiet: bool = False
    #: True: the property value is invalid; the run stops before anything is changed
    invalid: bool = False
    #: True: the property has no value here (zfs' "-"): not part of this backup at all
    unset: bool = False
    #: True: the value (or the one it inherits) was received, not set on this host
    received: bool = False

    @property
    def message(self) -> str:
        if self.invalid:
            return f"Ignored ({self.reason})"
        if self.selected:
            return f"Selected ({self.reason})"
        return f"{'Excluded' if self.reason.startswith('by ') else 'Ignored'} ({self.reason})"


def select(
    values: Mapping[str, Selection],
    *,
    property_name: str,
    exclude_received: bool = False,
    exclude_paths: Sequence[str] = (),
    exclude_unchanged: int = 0,
    written: Mapping[str, int] | None = None,
) -> list[Choice]:
    """One choice per dataset in `values`, in name order."""
    resolved_source: dict[str, str] = {}
    choices = []
    for name in sorted(values):
        selection = values[name]
        origin = selection_values.inherited_from(selection.source)
        source = resolved_source.get(origin, "local") if origin else selection.source
        resolved_source[name] = source
        choices.append(
            _choose(
                name,
                selection.value,
                source,
                inherited=origin is not None,
                property_name=property_name,
                exclude_received=exclude_received,
                exclude_paths=exclude_paths,
                exclude_unchanged=exclude_unchanged,
                written=(written or {}).get(name),
                where=selection.source,
            )
        )
    return choices


def _choose(
    name: str,
    value: str,
    source: str,
    *,
    inherited: bool,
    property_name: str,
    exclude_received: bool,
    exclude_paths: Sequence[str],
    exclude_unchanged: int,
    written: int | None,
    where: str = "local",
) -> Choice:
    if value in selection_values.UNSET:
        return Choice(name, False, "not selected", quiet=True, unset=True)
    if value not in VALUES:
        return Choice(
            name,
            False,
            f"invalid value '{value}' of {property_name} ({where}): "
            "allowed are true, false, child, parent",
            invalid=True,
        )
    refused = selection_values.refusal(value, inherited)
    if refused is not None:
        return Choice(name, False, refused)
    for path in exclude_paths:
        if under(name, path.rstrip("/")):
            return Choice(name, False, "path in exclude list", quiet=True)
    received = selection_values.received_refusal(source, exclude_received)
    if received is not None:
        return Choice(name, False, received)
    if exclude_unchanged and written is not None and written < exclude_unchanged:
        return Choice(name, False, "by --exclude-unchanged")
    reason = "inherited selection" if inherited else "direct selection"
    return Choice(name, True, reason, received=source == "received")


def without_replicas(
    choices: Sequence[Choice], guids: Mapping[str, Collection[int]]
) -> list[Choice]:
    """Leave out the replicas: a selected dataset whose selection value was received,
    and which shares a snapshot guid with another selected dataset on this host (a
    snapshot or a bookmark of it: `guids`), is a copy of that one (another target of
    the backup on the sources' own host), not a source. Backing it up would snapshot
    and thin the other target's copy.

    Datasets whose value is set here claim their guids first, then received ones from
    the shallowest (the original of a copy received on the same host, in a chain of
    hosts): a received dataset that meets a guid claimed by another is its replica.
    A chain of hosts still works: there the original is on another host."""
    owner: dict[int, str] = {}
    replica_of: dict[str, str] = {}
    order = sorted(
        (c for c in choices if c.selected),
        key=lambda c: (c.received, c.dataset.count("/"), c.dataset),
    )
    for choice in order:
        mine = guids.get(choice.dataset, ())
        original = next((owner[g] for g in mine if g in owner), None) if choice.received else None
        if original is not None:
            replica_of[choice.dataset] = original
            continue
        for guid in mine:
            owner.setdefault(guid, choice.dataset)
    return [
        attrs.evolve(
            c,
            selected=False,
            reason=f"replica of {replica_of[c.dataset]}: not a source; "
            "--include-received to back it up",
        )
        if c.dataset in replica_of
        else c
        for c in choices
    ]
