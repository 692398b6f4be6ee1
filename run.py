"""python run.py [serve|prepare|render|client|grant|check-models|actors]: the `streamer` command (streamer/cli.py), run
from a checkout without installing it."""

import sys

from streamer.cli import main

if __name__ == "__main__":
    sys.exit(main())
