"""Test configuration: the real-ZFS guest plugin (see tests/zfsvm/plugin.py)."""

pytest_plugins = ["tests.zfsvm.plugin"]
