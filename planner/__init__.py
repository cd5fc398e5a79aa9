"""Diff and plan: the pure step between desired and observed state.

Turns the difference into typed actions (snapshot, send, hold, release, destroy, ...)
in a dependency DAG with a deterministic order, checks the safety invariants on every
plan, compiles it into typed commands (commands.py) and steps that describe themselves
(compile.py, describe.py), renders plans as tables, and saves/loads them as versioned
JSON.
"""
