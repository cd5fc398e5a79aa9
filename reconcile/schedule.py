"""Thinning schedules: parsing and explaining strings like `10,1d1w,1w1m,1m1y`.

A schedule is a comma separated list of rules. A plain number N keeps the last N
snapshots. `<interval><ttl>` (for example `1d1w`) keeps one snapshot per interval-sized
block of time for as long as it is younger than ttl. Units: y (365.25 days), m (30 days),
w, d, h, min, s, as in zfs-autobackup.

    >>> Schedule.parse("10,1d1w").describe()
    ['Keep the last 10 snapshots.', 'Keep every 1 day, delete after 1 week.']
"""

from __future__ import annotations

import re

import attrs

from reconcile.errors import ScheduleError, quoted

UNIT_SECONDS: dict[str, float] = {
    "y": 3600 * 24 * 365.25,
    "m": 3600 * 24 * 30,
    "w": 3600 * 24 * 7,
    "d": 3600 * 24,
    "h": 3600,
    "min": 60,
    "s": 1,
}
UNIT_NAMES = {
    "y": "year",
    "m": "month",
    "w": "week",
    "d": "day",
    "h": "hour",
    "min": "minute",
    "s": "second",
}
DEFAULT = "10,1d1w,1w1m,1m1y"
#: the longest interval, ttl or duration (a number beyond would overflow a float, or
#: exceed Python's limit on the digits of an int, long before it meant anything)
MAX_YEARS = 1000
MAX_SECONDS = MAX_YEARS * UNIT_SECONDS["y"]
#: the most snapshots "keep the last N" may keep
MAX_KEEP_LAST = 1_000_000
#: digits read at most (more would be above every bound anyway)
_DIGITS = 20
_RULE = re.compile(r"([0-9]+)([a-z]+)([0-9]+)([a-z]+)", re.ASCII)
_DURATION = re.compile(r"([0-9]+)([a-z]+)", re.ASCII)
_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_ALLOWED = (
    "a number (keep the last N) or <interval><ttl> such as 1d1w (units: y, m, w, d, h, min, s)"
)


def _plural(amount: int, unit: str) -> str:
    return f"{amount} {UNIT_NAMES[unit]}{'' if amount == 1 else 's'}"


def parse_duration(text: str) -> float:
    """`30d` -> seconds (the units of a schedule), for options such as --destroy-missing."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or match.group(2) not in UNIT_SECONDS:
        raise ScheduleError(
            f"Invalid duration {quoted(text)}: use a number and a unit, such as 30d "
            "(units: y, m, w, d, h, min, s)"
        )
    seconds = _amount(match.group(1)) * UNIT_SECONDS[match.group(2)]
    if seconds > MAX_SECONDS:
        raise ScheduleError(f"Invalid duration {quoted(text)}: at most {MAX_YEARS} years")
    return seconds


def _amount(digits: str) -> int:
    """A number of ASCII digits, at most _DIGITS of them (beyond: above every bound)."""
    return int(digits) if len(digits.lstrip("0")) <= _DIGITS else 10**_DIGITS


def age_words(seconds: float) -> str:
    """3h 20m, 2d 4h, 45s (a negative age is in the future)."""
    if seconds < 0:
        return f"in {age_words(-seconds)}"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


@attrs.frozen
class Rule:
    """Keep one snapshot per `period` seconds (blocks counted from the epoch) until `ttl`."""

    text: str
    period_amount: int
    period_unit: str
    ttl_amount: int
    ttl_unit: str

    @property
    def period(self) -> float:
        return self.period_amount * UNIT_SECONDS[self.period_unit]

    @property
    def ttl(self) -> float:
        return self.ttl_amount * UNIT_SECONDS[self.ttl_unit]

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.fullmatch(text.lower())
        if not match:
            raise ScheduleError(f"Invalid schedule rule {quoted(text)}: allowed is {_ALLOWED}")
        period_amount, period_unit, ttl_amount, ttl_unit = match.groups()
        for unit in (period_unit, ttl_unit):
            if unit not in UNIT_SECONDS:
                raise ScheduleError(
                    f"Invalid time unit {quoted(unit)} in schedule rule {quoted(text)}: "
                    "allowed are y, m, w, d, h, min, s"
                )
        rule = cls(text.lower(), _amount(period_amount), period_unit, _amount(ttl_amount), ttl_unit)
        invalid = f"Invalid schedule rule {quoted(text)}"
        if rule.period <= 0:
            raise ScheduleError(f"{invalid}: the interval must be above 0")
        if rule.ttl > MAX_SECONDS:
            raise ScheduleError(f"{invalid}: the ttl is at most {MAX_YEARS} years")
        if rule.period > rule.ttl:
            raise ScheduleError(f"{invalid}: the interval can't be longer than the ttl")
        return rule

    def describe(self) -> str:
        every = _plural(self.period_amount, self.period_unit)
        ttl = _plural(self.ttl_amount, self.ttl_unit)
        return f"Keep every {every}, delete after {ttl}."


@attrs.frozen
class Schedule:
    text: str
    keep_last: int = 0
    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Parse a schedule; an empty string keeps nothing (but the newest snapshot)."""
        keep_last = 0
        rules: list[Rule] = []
        if text.strip():
            for part in text.split(","):
                item = part.strip()
                if _NUMBER.fullmatch(item):
                    # as zfs-autobackup: the last plain number wins
                    keep_last = _amount(item)
                    if keep_last > MAX_KEEP_LAST:
                        raise ScheduleError(
                            f"Invalid schedule rule {quoted(item)}: keep at most "
                            f"{MAX_KEEP_LAST} snapshots"
                        )
                elif not item:
                    raise ScheduleError(
                        f"Invalid schedule {quoted(text)}: empty rule between commas"
                    )
                else:
                    rules.append(Rule.parse(item))
        return cls(text, keep_last, tuple(rules))

    def describe(self) -> list[str]:
        lines = []
        if self.keep_last:
            n = self.keep_last
            lines.append(f"Keep the last {n} snapshot{'' if n == 1 else 's'}.")
        lines.extend(rule.describe() for rule in self.rules)
        return lines or ["Keep no old snapshots."]
