"""Schedules and the thinner: the seed's texts and worked example, bad input, and
decisions identical to zfs-autobackup 3.3's own Thinner (hypothesis, many schedules)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.errors import ScheduleError
from reconcile.schedule import DEFAULT, Schedule, parse_duration
from reconcile.thinner import thin
from tests import oracle

DAY = 86400


def test_default_schedule_is_explained_as_in_the_seed() -> None:
    assert Schedule.parse(DEFAULT).describe() == [
        "Keep the last 10 snapshots.",
        "Keep every 1 day, delete after 1 week.",
        "Keep every 1 week, delete after 1 month.",
        "Keep every 1 month, delete after 1 year.",
    ]


def test_plurals_and_minutes() -> None:
    assert Schedule.parse("1,15min2h,2d3y").describe() == [
        "Keep the last 1 snapshot.",
        "Keep every 15 minutes, delete after 2 hours.",
        "Keep every 2 days, delete after 3 years.",
    ]
    assert Schedule.parse("0").describe() == ["Keep no old snapshots."]
    assert Schedule.parse("").describe() == ["Keep no old snapshots."]


def test_seed_worked_example() -> None:
    """Four snapshots at random moments, rules 1d1w,1w1m,1m1y (the seed's picture)."""
    schedule = Schedule.parse("1d1w,1w1m,1m1y")
    stamps = [1 * DAY + 3600, 4 * DAY + 7200, 8 * DAY + 600, 8 * DAY + 5000]
    now = 9 * DAY
    verdicts = thin(schedule, stamps, now, always={3})
    # 1: daily block 1 is too old; weekly block 0 and monthly block 0 keep it
    assert verdicts[0].keep
    assert verdicts[0].reasons == ("1w1m block 0", "1m1y block 0")
    # 2: weekly and monthly block 0 are taken: only daily block 4
    assert verdicts[1].reasons == ("1d1w block 4",)
    # 3: daily block 8 and weekly block 1
    assert verdicts[2].reasons == ("1d1w block 8", "1w1m block 1")
    # 4: daily block 8 is taken: kept for now only because it is the newest
    assert verdicts[3].reasons == ("newest",)
    # ... and destroyed once it is not the newest any more
    assert not thin(schedule, stamps, now)[3].keep


def test_keep_last_and_ttl_reasons() -> None:
    schedule = Schedule.parse("2,1d1w")
    stamps = [0, 100, 200, 10 * DAY, 10 * DAY + 1]
    verdicts = thin(schedule, stamps, now=10 * DAY + 2)
    assert [v.keep for v in verdicts] == [False, False, False, True, True]
    assert "older than every rule's ttl" in verdicts[0].reason
    assert verdicts[3].reasons == ("1d1w block 10", "last 2")
    assert verdicts[4].reasons == ("last 2",)
    # no more snapshots than "keep the last N": all kept
    assert all(v.keep for v in thin(Schedule.parse("5,1d1w"), stamps, now=10**9))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1d", "Invalid schedule rule '1d'"),
        ("1x1w", "Invalid time unit 'x'"),
        ("1d1q", "Invalid time unit 'q'"),
        ("1w1d", "interval can't be longer than the ttl"),
        ("0d1w", "interval must be above 0"),
        ("-1", "Invalid schedule rule '-1'"),
        ("10,,1d1w", "empty rule"),
        ("1d1w2", "Invalid schedule rule '1d1w2'"),
        ("abc", "Invalid schedule rule 'abc'"),
    ],
)
def test_bad_schedules_name_the_value(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as info:
        Schedule.parse(text)
    assert "\n" not in str(info.value)


def test_durations() -> None:
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration("2min") == 120
    with pytest.raises(ScheduleError, match="Invalid duration '30'"):
        parse_duration("30")


_UNITS = ["s", "min", "h", "d", "w", "m", "y"]
_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": DAY, "w": 7 * DAY, "m": 30 * DAY, "y": 365.25 * DAY}


@st.composite
def schedules(draw: st.DrawFn) -> str:
    parts = []
    if draw(st.booleans()):
        parts.append(str(draw(st.integers(0, 15))))
    for _ in range(draw(st.integers(0, 4))):
        p_unit = draw(st.sampled_from(_UNITS))
        t_unit = draw(st.sampled_from(_UNITS))
        p_amount = draw(st.integers(1, 5))
        t_amount = draw(st.integers(1, 40))
        if p_amount * _SECONDS[p_unit] <= t_amount * _SECONDS[t_unit]:
            parts.append(f"{p_amount}{p_unit}{t_amount}{t_unit}")
    return ",".join(parts)


@settings(max_examples=400, deadline=None)
@given(
    schedule_text=schedules(),
    gaps=st.lists(st.integers(1, 20 * DAY), min_size=0, max_size=60),
    start=st.integers(1_500_000_000, 1_800_000_000),
    lag=st.integers(0, 400 * DAY),
)
def test_identical_to_zfs_autobackup_33(
    schedule_text: str, gaps: list[int], start: int, lag: int
) -> None:
    v3 = oracle.load("Thinner")
    stamps = []
    t = start
    for gap in gaps:
        t += gap
        stamps.append(t)
    now = t + lag
    objects = [SimpleNamespace(timestamp=s) for s in stamps]
    keep_objects = objects[-1:]
    keeps, _ = v3.Thinner(schedule_text).thin(objects, keep_objects=keep_objects, now=now)
    ours = thin(Schedule.parse(schedule_text), stamps, now, always={len(stamps) - 1})
    assert [v.keep for v in ours] == [any(o is k for k in keeps) for o in objects]
