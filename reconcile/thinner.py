"""The progressive thinner: which snapshots a schedule keeps, and why. Pure.

Decisions are identical to zfs-autobackup v3's for the same snapshots and `now`
(`tests/test_thinner.py` checks this against v3.3 itself):

- if there are no more snapshots than "keep the last N", all are kept;
- each `<interval><ttl>` rule divides time into blocks of `interval` seconds counted from
  the epoch (block = int(timestamp / interval)). Walking the snapshots oldest first, a
  snapshot younger than (or exactly) the ttl claims its block if the block is still free;
- rules with the same interval share their blocks (as in v3);
- a snapshot is kept if it claimed any block, is one of the last N, or is in `always`
  (the caller passes the newest snapshot there); everything else is destroyed.

Worked example (the seed's): rules 1d1w,1w1m,1m1y, four snapshots taken at random moments.
Snapshot 1 is in daily block 1 (too old for the daily rule), weekly block 0 and monthly
block 0: kept by the weekly and monthly rules. Snapshot 2: weekly block 0 and monthly
block 0 are taken, so only daily block 4 keeps it. Snapshot 3: daily block 8 and weekly
block 1. Snapshot 4 is in daily block 8, already taken: nothing needs it, it is destroyed
as soon as it is not the newest any more.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from reconcile.schedule import Schedule


@attrs.frozen
class Verdict:
    keep: bool
    #: why: the rules that keep it ("1d1w block 20452", "last 10", the caller's reason),
    #: or why nothing does
    reasons: tuple[str, ...]

    @property
    def reason(self) -> str:
        return ", ".join(self.reasons)


def thin(
    schedule: Schedule,
    timestamps: Sequence[float],
    now: float,
    always: Collection[int] = (),
    always_reason: str = "newest",
) -> list[Verdict]:
    """One verdict per timestamp (oldest first). `always`: indexes kept regardless."""
    count = len(timestamps)
    keep_last = schedule.keep_last
    if keep_last and count <= keep_last:
        return [Verdict(True, (f"last {keep_last}",)) for _ in timestamps]
    last_from = count - keep_last if keep_last else count

    # (period, ttl, text, the blocks taken for that period): rules with the same period
    # share their blocks, as in v3
    taken: dict[float, set[int]] = {rule.period: set() for rule in schedule.rules}
    rules = [(rule.period, rule.ttl, rule.text, taken[rule.period]) for rule in schedule.rules]
    longest_ttl = max((rule.ttl for rule in schedule.rules), default=None)
    verdicts = []
    now_int = int(now)
    for index, stamp in enumerate(timestamps):
        timestamp = int(stamp)
        age = now_int - timestamp
        reasons: list[str] = []
        for period, ttl, text, blocks in rules:
            if age <= ttl:
                block = int(timestamp / period)
                if block not in blocks:
                    blocks.add(block)
                    reasons.append(f"{text} block {block}")
        if index in always:
            reasons.append(always_reason)
        if index >= last_from:
            reasons.append(f"last {keep_last}")
        if reasons:
            verdicts.append(Verdict(True, tuple(reasons)))
        elif longest_ttl is None:
            why = (
                f"not among the last {keep_last}"
                if keep_last
                else "the schedule keeps no old snapshots"
            )
            verdicts.append(Verdict(False, (why,)))
        elif age > longest_ttl:
            verdicts.append(Verdict(False, (f"older than every rule's ttl ({age} s old)",)))
        else:
            verdicts.append(Verdict(False, ("its blocks already have an older snapshot",)))
    return verdicts
