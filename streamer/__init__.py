"""A real-time talking digital human streamed over WebRTC."""

__version__ = "0.1.0"
