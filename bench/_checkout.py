"""Imported first by every bench that runs as a script: `python bench/NAME.py` puts bench/ on
sys.path, not the checkout; this puts the checkout there, so `streamer` and `bench` import."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
