"""`python -m executors` runs the command line (as the `zfs-autobackup` script does)."""

import sys

from executors.cli import main

sys.exit(main())
