"""MuseTalk v1.5 lip sync with the official weights layout (see /work/shared/MUSETALK.md)."""

from streamer.render.musetalk.layout import has_weights
from streamer.render.musetalk.renderer import MuseTalkRenderer

__all__ = ["MuseTalkRenderer", "has_weights"]
