"""python -m streamer …: the `streamer` command (streamer/cli.py)."""

import sys

from streamer.cli import main

sys.exit(main())
