"""Typed keys of what the application holds."""

from aiohttp import web

from streamer.config import Settings
from streamer.metrics import Metrics
from streamer.pool.front.report import PoolGauges
from streamer.server.decoding import Decoders
from streamer.server.grants import Grants
from streamer.server.sessions import SessionManager
from streamer.server.state import Startup

SETTINGS = web.AppKey("settings", Settings)
SESSIONS = web.AppKey("sessions", SessionManager)
METRICS = web.AppKey("metrics", Metrics)
STARTUP = web.AppKey("startup", Startup)
"""Start-up state: ready, phase, the templates discovered and those that failed."""
AUDIO_DECODERS = web.AppKey("audio_decoders", Decoders)
"""Processes that decode uploads (a crashing decoder must not take the server down)."""
GRANTS = web.AppKey("grants", Grants)
POOL_GAUGES = web.AppKey("pool_gauges", PoolGauges)
"""Prometheus gauges of the render plane (capacity, admission), updated on each scrape."""
