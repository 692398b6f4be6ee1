"""Clock and playout, aiortc tracks, segmenter, compositor."""
