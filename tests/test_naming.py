"""Snapshot names: the fast parser never disagrees with strptime (zfs-autobackup's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executors.guard.rules import Policy
from reconcile.errors import UsageError
from reconcile.naming import Naming

#: the tool and the guard judge a backup name and its formats by the same rule (#33:
#: before, the guard let through 'Bak', a 250-character name and '{}-%Y%Y')
MAKERS = pytest.mark.parametrize("make", [Naming.create, Policy.create], ids=["tool", "guard"])

PATTERNS = [
    "{}-%Y%m%d%H%M%S",
    "{}_%Y-%m-%d_%H.%M",
    "%Y%m%d-{}",
    "{}-%d.%m.%Y %H:%M",
    "{}-%y%m%d",
]


def reference(pattern: str, name: str, utc: bool) -> float | None:
    try:
        parsed = datetime.strptime(name, pattern)
        return (parsed.replace(tzinfo=timezone.utc) if utc else parsed).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


@settings(max_examples=1500, deadline=None)
@given(
    fmt=st.sampled_from(PATTERNS),
    utc=st.booleans(),
    digits=st.lists(st.integers(0, 99), min_size=6, max_size=6),
    year=st.integers(0, 9999),
    mangle=st.sampled_from(["", "x", "0", "-1"]),
)
def test_fast_parse_equals_strptime(
    fmt: str, utc: bool, digits: list[int], year: int, mangle: str
) -> None:
    naming = Naming.create("bak", snapshot_format=fmt, utc=utc)
    month, day, hour, minute, second, short = digits
    text = (
        naming.snapshot_pattern.replace("%Y", f"{year:04d}")
        .replace("%y", f"{short:02d}")
        .replace("%m", f"{month:02d}")
        .replace("%d", f"{day:02d}")
        .replace("%H", f"{hour:02d}")
        .replace("%M", f"{minute:02d}")
        .replace("%S", f"{second:02d}")
    ) + mangle
    assert naming.timestamp(text) == reference(naming.snapshot_pattern, text, utc)


def test_names_round_trip_and_bad_formats() -> None:
    naming = Naming.create("offsite1", utc=True)
    assert naming.snapshot_name(1_767_268_800) == "offsite1-20260101120000"
    assert naming.timestamp("offsite1-20260101120000") == 1_767_268_800
    assert naming.timestamp("offsite2-20260101120000") is None
    assert not naming.is_ours("manual")
    with pytest.raises(UsageError, match="must contain"):
        Naming.create("x", snapshot_format="%Y%m%d")
    with pytest.raises(UsageError, match="needs time fields"):
        Naming.create("x", snapshot_format="{}-daily")
    with pytest.raises(UsageError, match="--hold-format"):
        Naming.create("x", hold_format="static")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # (#32) names zfs refuses: before, zfs refused them after the snapshot was taken
        ({"snapshot_format": "{}-%Y%m%d%H%M%S@x"}, "a ZFS name may hold only letters"),
        ({"snapshot_format": "{}-%Y%m%d%H%M%S/x"}, "a ZFS name may hold only letters"),
        ({"snapshot_format": "{}-%Y%m%d%H%M%S\nx"}, r"'\{\}-%Y%m%d%H%M%S\\nx'"),
        ({"snapshot_format": "{}-%%"}, "a ZFS name may hold only letters"),
        ({"snapshot_format": "{}-%Y" + "x" * 250}, "at most 253 characters"),
        # (#32) names that can't be read back: strptime fails, or never matches
        ({"snapshot_format": "{}-%Y%Y"}, "can't be read back"),
        ({"snapshot_format": "{}-%s"}, "can't be read back"),
        ({"snapshot_format": "{}-%Y%U"}, "can't be read back"),
        # (#32) formats that str.format evaluates, or that don't substitute the name
        ({"property_format": "{{}}{.x}"}, "once and plain"),
        ({"hold_format": "{{}}{[a]}"}, "once and plain"),
        ({"hold_format": "{{}}"}, "once and plain"),
        ({"hold_format": "{}{}"}, "once and plain"),
        ({"hold_format": "{0}"}, "once and plain"),
        ({"hold_format": "{!r}"}, "once and plain"),
        ({"hold_format": "{}}"}, "Single '}'"),
        # (#32) a selection property must be a user property; a hold tag not an option
        ({"property_format": "{}"}, "user property name"),
        ({"property_format": "Auto:{}"}, "user property name"),
        ({"hold_format": "-{}"}, "can't start with '-'"),
        ({"hold_format": "a\tb{}"}, "can't hold a tab, a line break or NUL"),
        ({"hold_format": "a\nb{}"}, "can't hold a tab, a line break or NUL"),
        ({"hold_format": "x" * 254 + "{}"}, "at most 255 bytes"),
    ],
)
@MAKERS
def test_formats_that_make_names_zfs_refuses_are_refused(
    make: Callable[..., object], kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        make("bak", **kwargs)


@MAKERS
@pytest.mark.parametrize("name", ["a%Y", "a b", "a@b", "a/b", "a,b", "a\nb", "ä", "", "²"])
def test_backup_names_hold_only_zfs_name_characters(make: Callable[..., object], name: str) -> None:
    with pytest.raises(UsageError, match="Invalid backup name"):
        make(name)


@MAKERS
@pytest.mark.parametrize(
    ("name", "message"),
    [("Bak", "user property name"), ("b" * 250, "at most 253 characters")],
)
def test_backup_names_that_make_a_bad_property_are_refused(
    make: Callable[..., object], name: str, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        make(name)


@pytest.mark.parametrize(
    "fmt", ["{}-%Y%m%d%H%M%S", "{}_%Y-%m-%d_%H.%M", "%Y%m%d-{}", "{}-%d.%m.%Y %H:%M", "{}-%y%m%d"]
)
def test_usual_formats_are_accepted_and_read_back(fmt: str) -> None:
    naming = Naming.create("Bak.2_x:y-z".lower(), snapshot_format=fmt, utc=True)
    assert naming.is_ours(naming.snapshot_name(1_767_268_800))
