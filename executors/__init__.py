"""Execute: run a plan's actions as commands on the right hosts, and the command line.

Everything with side effects lives here: the command runner (local and ssh, through
plumbum), the read-only runner for every mode that doesn't declare that it writes and
for `--test`, the console, and the command line: `modes` declares each subcommand once
(its word, whether it may write, its error exit code), `options` parses, `cli` runs.
"""
