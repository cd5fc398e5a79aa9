"""Names: the selection property, snapshot names with their timestamps, hold tags.

All three are formats with `{}` for the backup name, as in zfs-autobackup 3.3:
`autobackup:{}`, `{}-%Y%m%d%H%M%S` and `zfs_autobackup:{}`. A snapshot is "ours" when its
name parses with the snapshot format; its timestamp for thinning comes from the name
(local time, or UTC with --utc), never from zfs' creation property.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Optional

import attrs

from reconcile import formats, zfs_names
from reconcile.errors import UsageError, quoted

PROPERTY_FORMAT, SNAPSHOT_FORMAT, HOLD_FORMAT = (
    formats.PROPERTY_FORMAT,
    formats.SNAPSHOT_FORMAT,
    formats.HOLD_FORMAT,
)


@attrs.frozen
class Naming:
    backup_name: str
    property_name: str
    snapshot_pattern: str
    hold_tag: str
    utc: bool = False

    @classmethod
    def create(
        cls,
        backup_name: str,
        *,
        property_format: str = PROPERTY_FORMAT,
        snapshot_format: str = SNAPSHOT_FORMAT,
        hold_format: str = HOLD_FORMAT,
        utc: bool = False,
    ) -> Naming:
        check_backup_name(backup_name)
        pattern = formats.fill("--snapshot-format", snapshot_format, backup_name)
        _check_snapshot_pattern(snapshot_format, pattern)
        property_name = formats.fill("--property-format", property_format, backup_name)
        problem = zfs_names.user_property_problem(property_name)
        if problem is not None:
            raise UsageError(
                f"Invalid --property-format {quoted(property_format)}: with backup name "
                f"{quoted(backup_name)} it makes {quoted(property_name)}, but {problem}"
            )
        hold_tag = formats.fill("--hold-format", hold_format, backup_name)
        problem = zfs_names.hold_tag_problem(hold_tag)
        if problem is not None:
            raise UsageError(
                f"Invalid --hold-format {quoted(hold_format)}: the hold tag "
                f"{quoted(hold_tag)} is not allowed: {problem}"
            )
        return cls(
            backup_name=backup_name,
            property_name=property_name,
            snapshot_pattern=pattern,
            hold_tag=hold_tag,
            utc=utc,
        )

    #: name -> timestamp; planning asks for the same names many times
    _memo: dict[str, Optional[float]] = attrs.field(
        factory=dict, init=False, repr=False, eq=False, hash=False
    )

    def timestamp(self, snapshot_name: str) -> Optional[float]:
        """Seconds since the epoch encoded in an "our" snapshot name, None if not ours."""
        if snapshot_name not in self._memo:
            self._memo[snapshot_name] = self._parse(snapshot_name)
        return self._memo[snapshot_name]

    def _parse(self, snapshot_name: str) -> Optional[float]:
        parsed = formats.parse_time(self.snapshot_pattern, snapshot_name)
        if parsed is None:
            return None
        if self.utc:
            parsed = parsed.replace(tzinfo=timezone.utc)
        try:
            return parsed.timestamp()
        except (ValueError, OverflowError, OSError):
            return None  # a date the clock cannot represent (year 1): not ours

    def is_ours(self, snapshot_name: str) -> bool:
        return self.timestamp(snapshot_name) is not None

    def snapshot_name(self, now: float) -> str:
        moment = time.gmtime(now) if self.utc else time.localtime(now)
        return time.strftime(self.snapshot_pattern, moment)


#: a time whose every field differs from the others (and from 0 and 1)
_SAMPLE = datetime(2001, 2, 3, 14, 5, 6)


def check_backup_name(name: str) -> None:
    problem = zfs_names.backup_name_problem(name)
    if problem is not None:
        raise UsageError(f"Invalid backup name {quoted(name)}: {problem}")


def _check_snapshot_pattern(snapshot_format: str, pattern: str) -> None:
    """The snapshot names a format makes are names zfs takes, and they parse back to the
    time they were made at (else thinning could not read them, or strptime fails)."""
    invalid = f"Invalid --snapshot-format {quoted(snapshot_format)}"
    if "%" not in pattern:
        raise UsageError(f"{invalid}: it needs time fields such as %Y%m%d%H%M%S")
    try:
        sample = _SAMPLE.strftime(pattern)
    except ValueError as exc:
        raise UsageError(f"{invalid}: {exc}") from None
    problem = zfs_names.component_problem(sample, zfs_names.MAX_NAME - zfs_names.SHORTEST_DATASET)
    if problem is not None:
        raise UsageError(f"{invalid}: it makes snapshot names such as {quoted(sample)}; {problem}")
    parsed = formats.parse_time(pattern, sample)
    if parsed is None or parsed.strftime(pattern) != sample:
        raise UsageError(
            f"{invalid}: its snapshot names can't be read back (such as {quoted(sample)}): "
            "use each time field once, such as %Y%m%d%H%M%S"
        )
