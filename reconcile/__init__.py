"""Observe and desire: the read side of the reconciler.

`reconcile` holds the data model, the parsing of zfs output, observation of a host's
state (read-only commands through an injected runner), and the pure rules that decide
what the state should be: selection, snapshot naming, thinning and target mapping.
It also holds the rules the remote guard shares with the tool (names, selection values,
the scripts and mount rules, the command language, the send-stream reader): those
modules use only the standard library, an import-linter contract in pyproject.toml.
"""

__version__ = "0.1.0"
