"""Execute: run a plan's actions as commands on the right hosts, and the command line.

Everything with side effects lives here: the command runner (local and ssh, through
plumbum), the read-only runner for `plan`/`--test`, the console, and `cli`.
"""
