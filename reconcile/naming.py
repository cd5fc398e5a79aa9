"""Names: the selection property, snapshot names with their timestamps, hold tags.

All three are formats with `{}` for the backup name, as in zfs-autobackup 3.3:
`autobackup:{}`, `{}-%Y%m%d%H%M%S` and `zfs_autobackup:{}`. A snapshot is "ours" when its
name parses with the snapshot format; its timestamp for thinning comes from the name
(local time, or UTC with --utc), never from zfs' creation property.
"""

from __future__ import annotations

import time
from datetime import timezone
from typing import Optional

import attrs

from reconcile import formats

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
        names = formats.names(
            backup_name,
            property_format=property_format,
            snapshot_format=snapshot_format,
            hold_format=hold_format,
        )
        return cls(
            backup_name=backup_name,
            property_name=names.property_name,
            snapshot_pattern=names.snapshot_pattern,
            hold_tag=names.hold_tag,
            utc=utc,
        )

    #: name -> timestamp; planning asks for the same names many times
    _memo: dict[str, Optional[float]] = attrs.field(
        factory=dict, init=False, repr=False, eq=False, hash=False
    )

    def timestamp(self, snapshot_name: str) -> Optional[float]:
        """Seconds since the epoch encoded in an "our" snapshot name, None if not ours."""
        try:
            return self._memo[snapshot_name]
        except KeyError:  # (once per name: one dict lookup for every other call)
            parsed = self._memo[snapshot_name] = self._parse(snapshot_name)
            return parsed

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
