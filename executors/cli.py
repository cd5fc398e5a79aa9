"""Placeholder until the command line lands."""

from reconcile import __version__


def main() -> int:
    print(f"zfs-autobackup (zfs-reconcile) v{__version__}")
    return 0
