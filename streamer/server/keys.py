"""Typed keys of what the application holds."""

from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.server.sessions import SessionManager

SETTINGS = web.AppKey("settings", Settings)
SESSIONS = web.AppKey("sessions", SessionManager)
METRICS = web.AppKey("metrics", Metrics)
STARTUP = web.AppKey("startup", dict)
"""Start-up state: ready, phase, the templates discovered and those that failed."""
DECODERS = web.AppKey("decoders", ThreadPoolExecutor)
"""Threads for audio decoding and speech synthesis, apart from the pool video encoding uses."""
