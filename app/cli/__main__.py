"""`python -m app.cli ...`: the `syncstatus` command without its console script (tests and
benchmarks start servers this way, with the interpreter they run on)."""

import sys

from app.cli.main import main

sys.exit(main())
