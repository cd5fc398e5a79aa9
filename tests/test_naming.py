"""Snapshot names: the fast parser never disagrees with strptime (zfs-autobackup's)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.errors import UsageError
from reconcile.naming import Naming

PATTERNS = [
    "{}-%Y%m%d%H%M%S",
    "{}_%Y-%m-%d_%H.%M",
    "%Y%m%d-{}",
    "{}-%d.%m.%Y %H:%M",
    "{}-%y%m%d",
    "{}-%s",
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
        .replace("%s", str(year * 1000))
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
