"""Execute: run a plan's actions as commands on the right hosts, and the command line.

Everything with side effects lives here: the command runner (local and ssh, through
plumbum), the read-only runner for every mode that doesn't declare that it writes and
for `--test`, the console, and the command line: `modes` registers each subcommand in
one line (its word, whether it may write, its error exit code, its module),
`subcommands` has one module per subcommand (its arguments and its run function),
`options` parses the job options they share, `cli` runs the one asked for.
"""
