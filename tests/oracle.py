"""zfs-autobackup 3.3 itself, as a test oracle (never imported by the tool).

tests/run installs it with `pip install --no-deps --target .venv/zfs-autobackup-3.3`
(its console script would clash with ours in the same venv). ZFS_AUTOBACKUP_33 names the
folder; where it is set, a missing oracle is an error rather than a skip.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

DEFAULT = Path(__file__).resolve().parents[1] / ".venv" / "zfs-autobackup-3.3"


def oracle_path() -> Path:
    return Path(os.environ.get("ZFS_AUTOBACKUP_33", str(DEFAULT)))


def load(module: str) -> ModuleType:
    """Import `zfs_autobackup.<module>` from the oracle folder, or skip/fail."""
    path = oracle_path()
    if not (path / "zfs_autobackup").is_dir():
        message = f"zfs-autobackup 3.3 is not installed in {path} (tests/run installs it)"
        if "ZFS_AUTOBACKUP_33" in os.environ:
            pytest.fail(message)
        pytest.skip(message)
    if str(path) not in sys.path:
        sys.path.append(str(path))
    return importlib.import_module(f"zfs_autobackup.{module}")
