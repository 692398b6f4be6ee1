"""Renderers: given a template's frames and speech audio, return 256×256 face crops."""
