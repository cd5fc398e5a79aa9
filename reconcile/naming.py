"""Names: the selection property, snapshot names with their timestamps, hold tags.

All three are formats with `{}` for the backup name, as in zfs-autobackup 3.3:
`autobackup:{}`, `{}-%Y%m%d%H%M%S` and `zfs_autobackup:{}`. A snapshot is "ours" when its
name parses with the snapshot format; its timestamp for thinning comes from the name
(local time, or UTC with --utc), never from zfs' creation property.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime, timezone
from typing import Optional

import attrs

from reconcile.errors import UsageError

PROPERTY_FORMAT = "autobackup:{}"
SNAPSHOT_FORMAT = "{}-%Y%m%d%H%M%S"
HOLD_FORMAT = "zfs_autobackup:{}"


_FIELDS = {
    "%Y": r"(\d{4})",
    "%m": r"(\d{2})",
    "%d": r"(\d{2})",
    "%H": r"(\d{2})",
    "%M": r"(\d{2})",
    "%S": r"(\d{2})",
}


@functools.lru_cache(maxsize=16)
def _fast_regex(pattern: str) -> Optional[tuple[re.Pattern[str], tuple[str, ...]]]:
    """A fixed-width regex for patterns made of literal text and %Y %m %d %H %M %S only."""
    parts = re.split(r"(%.)", pattern)
    regex, fields = "", []
    for part in parts:
        if part.startswith("%") and len(part) == 2:
            if part not in _FIELDS or part in fields:
                return None
            regex += _FIELDS[part]
            fields.append(part)
        else:
            regex += re.escape(part)
    return re.compile(regex + r"\Z"), tuple(fields)


def _fast_parse(pattern: str, name: str) -> Optional[datetime]:
    """Parse with the fixed-width regex; None means "ask strptime" (never a different answer:
    a fixed-width match of these fields is read by strptime the same way)."""
    compiled = _fast_regex(pattern)
    if compiled is None:
        return None
    regex, fields = compiled
    match = regex.match(name)
    if match is None:
        return None
    values = dict(zip(fields, map(int, match.groups())))
    try:
        return datetime(
            values.get("%Y", 1900), values.get("%m", 1), values.get("%d", 1),
            values.get("%H", 0), values.get("%M", 0), values.get("%S", 0),
        )  # fmt: skip
    except ValueError:
        return None


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
        parsed = _fast_parse(self.snapshot_pattern, snapshot_name)
        if parsed is None:
            # strptime decides everything the fixed-width fast path does not match
            try:
                parsed = datetime.strptime(snapshot_name, self.snapshot_pattern)
            except ValueError:
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
