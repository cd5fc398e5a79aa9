"""zfs-autobackup 3.3 itself, as a test oracle (never imported by the tool), and 4.0rc2
(whose bookmarks ours must recognise: run in the guest only).

tests/run installs each with `pip install --no-deps --target .venv/zfs-autobackup-VERSION`
(their console scripts would clash with ours in the same venv). ZFS_AUTOBACKUP_33 (and
ZFS_AUTOBACKUP_40) name the folders; where it is set, a missing oracle is an error rather
than a skip.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

VENV = Path(__file__).resolve().parents[1] / ".venv"
#: version -> the environment variable naming its folder
PEERS = {"3.3": "ZFS_AUTOBACKUP_33", "4.0rc2": "ZFS_AUTOBACKUP_40"}


def oracle_path(version: str = "3.3") -> Path:
    return Path(os.environ.get(PEERS[version], str(VENV / f"zfs-autobackup-{version}")))


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
