"""Service counters, kept once and shown two ways: `/api/stats` JSON and Prometheus `/metrics`."""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

LINK_GAUGES = (
    ("loss", "loss_ratio", "Fraction of video packets the viewer reported lost"),
    ("rtt_ms", "rtt_seconds", "Round-trip time from the viewer's receiver reports"),
    ("nacks", "nacks", "Video packets the viewer asked again (NACK)"),
    ("plis", "keyframe_requests", "Keyframes the viewer asked for (PLI/FIR)"),
    ("bitrate_kbps", "sent_bits_per_second", "Video bitrate actually sent"),
    ("remb_kbps", "remb_bits_per_second", "The viewer's estimate of its bandwidth (REMB)"),
    ("step", "ladder_step", "Adaptive ladder step (0 = full bitrate and size)"),
)
LINK_SCALE = {"rtt_ms": 0.001, "bitrate_kbps": 1000, "remb_kbps": 1000}
LATENCY_BUCKETS = (0.04, 0.08, 0.12, 0.16, 0.24, 0.32, 0.5, 0.75, 1.0, 2.0, 5.0)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    total_requests: int = 0
    """Speech requests accepted (speak, say, audio streams)."""
    completed_requests: int = 0
    """Speech requests played to their end."""
    interrupted_requests: int = 0
    template_usage: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    """Seconds from a speech request's audio arriving to its first lip-synced unit playing."""

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = PromCounter("streamer_speech_requests", "Speech requests accepted", registry=r)
        self.completed = PromCounter("streamer_speech_completed", "Speech requests played to the end", registry=r)
        self.interrupted = PromCounter("streamer_speech_interrupted", "Speech requests interrupted", registry=r)
        self.sessions_opened = PromCounter("streamer_sessions_opened", "Sessions opened", ["template"], registry=r)
        self.sessions = Gauge("streamer_sessions", "Open sessions", registry=r)
        self.units = PromCounter("streamer_units", "Units played", ["kind"], registry=r)
        self.render_failures = PromCounter(
            "streamer_render_failures",
            "Windows whose render failed (their audio played over the still face)",
            registry=r,
        )
        self.first_frame = Histogram(
            "streamer_first_speech_frame_seconds",
            "Audio arrival to first lip-synced frame",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.render_seconds = Histogram("streamer_render_window_seconds", "Render time of one window", registry=r)
        self.workers_alive = Gauge("streamer_worker_alive", "Render worker is running", ["index", "device"], registry=r)
        self.http_errors = PromCounter(
            "streamer_http_errors", "HTTP answers with an error status (500: a fault, logged)", ["status"], registry=r
        )
        self.task_failures = PromCounter(
            "streamer_task_failures", "Background tasks (pump, dispatcher) that died", ["task"], registry=r
        )
        self.link = {
            key: Gauge(f"streamer_link_{name}", help_, ["session"], registry=r) for key, name, help_ in LINK_GAUGES
        }

    def worker_states(self, devices: list[dict[str, Any]]) -> None:
        for d in devices:
            self.workers_alive.labels(str(d["index"]), d["device"]).set(1 if d["alive"] else 0)

    def link_quality(self, session_id: str, quality: dict[str, float | int | None]) -> None:
        """One session's RTCP link quality (see webrtc/link.py) as gauges labelled by session."""
        for key, gauge in self.link.items():
            value = quality.get(key)
            if value is not None:
                gauge.labels(session_id).set(float(value) * LINK_SCALE.get(key, 1))

    def link_closed(self, session_id: str) -> None:
        for gauge in self.link.values():
            with contextlib.suppress(KeyError):
                gauge.remove(session_id)

    def request(self) -> None:
        self.total_requests += 1
        self.requests.inc()

    def completed_request(self) -> None:
        self.completed_requests += 1
        self.completed.inc()

    def interrupted_request(self) -> None:
        self.interrupted_requests += 1
        self.interrupted.inc()

    def session_opened(self, template: str) -> None:
        self.template_usage[template] += 1
        self.sessions_opened.labels(template).inc()

    def first_speech_frame(self, seconds: float) -> None:
        self.latencies.append(seconds)
        self.first_frame.observe(seconds)

    def completion_rate(self) -> str:
        if not self.total_requests:
            return "0.00%"
        return f"{100.0 * self.completed_requests / self.total_requests:.2f}%"

    def latency_summary(self) -> dict[str, float | int | None]:
        values = list(self.latencies)
        return {
            "count": len(values),
            "p50_ms": _ms(percentile(values, 0.5)),
            "p95_ms": _ms(percentile(values, 0.95)),
            "max_ms": _ms(max(values) if values else None),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
