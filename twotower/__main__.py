"""`python -m twotower ...`: the `twotower` command without its entry point (as `python -m twotower.cli`)."""

import sys

from .cli import main

sys.exit(main())
