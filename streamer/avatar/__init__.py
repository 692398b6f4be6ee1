"""Templates: discovery, preprocessing, face boxes, blend masks and the cache."""
