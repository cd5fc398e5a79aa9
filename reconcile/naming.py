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

from reconcile.errors import UsageError

PROPERTY_FORMAT = "autobackup:{}"
SNAPSHOT_FORMAT = "{}-%Y%m%d%H%M%S"
HOLD_FORMAT = "zfs_autobackup:{}"


def _fill(option: str, fmt: str, backup_name: str) -> str:
    if "{}" not in fmt:
        raise UsageError(f"Invalid {option} '{fmt}': it must contain {{}} for the backup name")
    try:
        return fmt.format(backup_name)
    except (IndexError, KeyError, ValueError) as exc:
        raise UsageError(
            f"Invalid {option} '{fmt}': use {{}} once for the backup name ({exc})"
        ) from None


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
        pattern = _fill("--snapshot-format", snapshot_format, backup_name)
        if "%" not in pattern:
            raise UsageError(
                f"Invalid --snapshot-format '{snapshot_format}': it needs time fields "
                "such as %Y%m%d%H%M%S"
            )
        return cls(
            backup_name=backup_name,
            property_name=_fill("--property-format", property_format, backup_name),
            snapshot_pattern=pattern,
            hold_tag=_fill("--hold-format", hold_format, backup_name),
            utc=utc,
        )

    def timestamp(self, snapshot_name: str) -> Optional[float]:
        """Seconds since the epoch encoded in an "our" snapshot name, None if not ours."""
        try:
            parsed = datetime.strptime(snapshot_name, self.snapshot_pattern)
        except ValueError:
            return None
        if self.utc:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()

    def is_ours(self, snapshot_name: str) -> bool:
        return self.timestamp(snapshot_name) is not None

    def snapshot_name(self, now: float) -> str:
        moment = time.gmtime(now) if self.utc else time.localtime(now)
        return time.strftime(self.snapshot_pattern, moment)
