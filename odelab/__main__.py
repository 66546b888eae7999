"""`python -m odelab ...`: the command line (see `odelab.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
