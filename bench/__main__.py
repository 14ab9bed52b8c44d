"""`python -m bench COMMAND`: NPC traffic against the running stack, and what its results say (bench/cli/)."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
