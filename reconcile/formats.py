"""Name formats, as zfs-autobackup 3.3's: `{}` for the backup name (`autobackup:{}`,
`zfs_autobackup:{}`), and time fields in snapshot names (`{}-%Y%m%d%H%M%S`); and
commands given as option values, split with shell rules.

Standard library only: the remote guard (executors.guard) recognises our snapshot names
and hold tags with it, where the project's dependencies may not be installed.
"""

from __future__ import annotations

import functools
import re
import shlex
import string
from datetime import datetime
from typing import NamedTuple, Optional

from reconcile import zfs_names
from reconcile.errors import UsageError, quoted

#: zfs-autobackup's defaults: the selection property, snapshot names, hold tags
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


def parse_time(pattern: str, name: str) -> Optional[datetime]:
    """The (naive) time a name encodes with `pattern`, None if it does not match."""
    parsed = _fast_parse(pattern, name)
    if parsed is not None:
        return parsed
    # strptime decides everything the fixed-width fast path does not match
    try:
        return datetime.strptime(name, pattern)
    except (ValueError, re.error):
        # (re.error: a pattern strptime can't compile, such as %Y twice; refused as an
        # option value, see naming.Naming.create)
        return None


def fill(option: str, fmt: str, backup_name: str) -> str:
    """`fmt` with the backup name for its one `{}` field: a plain field, as str.format
    would evaluate an attribute, an index, a conversion or a format spec."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(fmt)
            if name is not None
        ]
    except ValueError as exc:
        raise UsageError(
            f"Invalid {option} {quoted(fmt)}: use {{}} once for the backup name ({exc})"
        ) from None
    if fields != [("", "", None)]:
        raise UsageError(
            f"Invalid {option} {quoted(fmt)}: it must contain {{}} for the backup name, "
            "once and plain ({{ and }} for a brace)"
        )
    return fmt.format(backup_name)


def split_command(option: str, text: str) -> tuple[str, ...]:
    """A command given as one option value (a pipe, a pre-snapshot command), split with
    shell rules into argv (never run by a shell)."""
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise UsageError(f"Invalid {option} {quoted(text)}: {exc}") from None
    if not argv:
        raise UsageError(f"Invalid {option} {quoted(text)}: it is empty")
    return argv


class Names(NamedTuple):
    """The names a backup name makes: its selection property, snapshot names, hold tag."""

    property_name: str
    snapshot_pattern: str
    hold_tag: str


def names(
    backup_name: str,
    *,
    property_format: str = PROPERTY_FORMAT,
    snapshot_format: str = SNAPSHOT_FORMAT,
    hold_format: str = HOLD_FORMAT,
) -> Names:
    """The names of a backup, each checked: the one rule for a valid backup name and
    formats, for the tool (reconcile.naming) and the guard alike. A bad value is one
    UsageError naming it and what is allowed."""
    check_backup_name(backup_name)
    pattern = fill("--snapshot-format", snapshot_format, backup_name)
    _check_snapshot_pattern(snapshot_format, pattern)
    property_name = fill("--property-format", property_format, backup_name)
    problem = zfs_names.user_property_problem(property_name)
    if problem is not None:
        raise UsageError(
            f"Invalid --property-format {quoted(property_format)}: with backup name "
            f"{quoted(backup_name)} it makes {quoted(property_name)}, but {problem}"
        )
    hold_tag = fill("--hold-format", hold_format, backup_name)
    problem = zfs_names.hold_tag_problem(hold_tag)
    if problem is not None:
        raise UsageError(
            f"Invalid --hold-format {quoted(hold_format)}: the hold tag "
            f"{quoted(hold_tag)} is not allowed: {problem}"
        )
    return Names(property_name, pattern, hold_tag)


def check_backup_name(name: str) -> None:
    problem = zfs_names.backup_name_problem(name)
    if problem is not None:
        raise UsageError(f"Invalid backup name {quoted(name)}: {problem}")


#: a time whose every field differs from the others (and from 0 and 1)
_SAMPLE = datetime(2001, 2, 3, 14, 5, 6)


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
    parsed = parse_time(pattern, sample)
    if parsed is None or parsed.strftime(pattern) != sample:
        raise UsageError(
            f"{invalid}: its snapshot names can't be read back (such as {quoted(sample)}): "
            "use each time field once, such as %Y%m%d%H%M%S"
        )
