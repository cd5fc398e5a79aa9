"""Where each source dataset lands on the target. Pure.

target = target path + "/" + the source name without its first `strip_path` components
(`--strip-path`, as zfs-autobackup); a source stripped of all its components lands on the
target path itself (a whole pool onto a backup pool, with --force). Two sources that
would land on the same target name are an error naming both; the first dataset (in name
order) that cannot be stripped that far, or collides, is the one reported, as in 3.3.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconcile.errors import UsageError


def target_name(source: str, target_path: str, strip_path: int = 0) -> str:
    parts = source.split("/")
    if strip_path > len(parts):
        raise UsageError(
            f"--strip-path {strip_path} strips too much from '{source}' "
            f"({len(parts)} path components): at most {len(parts)} is allowed"
        )
    return "/".join([target_path.rstrip("/"), *parts[strip_path:]])


def map_targets(sources: Iterable[str], target_path: str, strip_path: int = 0) -> dict[str, str]:
    """source -> target for every source; raises on a collision."""
    result: dict[str, str] = {}
    seen: dict[str, str] = {}
    for source in sources:
        target = target_name(source, target_path, strip_path)
        if target in seen:
            raise UsageError(
                f"Target collision: '{seen[target]}' and '{source}' would both be received "
                f"as '{target}' (--strip-path {strip_path}): use a smaller --strip-path"
            )
        seen[target] = source
        result[source] = target
    return result
