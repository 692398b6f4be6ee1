"""What the browser tests share: in-page probes (Chromium's path and flags: tests.support.servers)."""

from __future__ import annotations

from dataclasses import dataclass

TEMPLATE = "astronaut"

RECORDER_JS = """
([getPcSource, targetSource]) => {
  // Samples getStats() every 100 ms and records the session's events, both timestamped.
  const getPc = new Function(`return ${getPcSource};`);
  const target = new Function(`return ${targetSource};`)();
  const rec = { samples: [], events: [] };
  const names = ["connected", "speaking-started", "speaking-ended", "interrupted", "welcome-ended", "error",
    "user-speech-started", "user-speech-ended", "transcript", "reply-started", "reply-ended"];
  for (const name of names) {
    target.addEventListener(name, (e) => rec.events.push({ type: name, t: performance.now(), detail: e.detail }));
  }
  const tick = async () => {
    const pc = getPc();
    if (pc) {
      const report = await pc.getStats();
      const s = { t: performance.now() };
      report.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") {
          Object.assign(s, { frames: r.framesDecoded || 0, freezes: r.freezeCount || 0,
            freezeS: r.totalFreezesDuration || 0, width: r.frameWidth || 0 });
        } else if (r.type === "inbound-rtp" && r.kind === "audio") {
          Object.assign(s, { samples: r.totalSamplesReceived || 0, concealed: r.concealedSamples || 0,
            level: r.audioLevel || 0 });
        }
      });
      rec.samples.push(s);
    }
    rec.timer = setTimeout(tick, 100);
  };
  tick();
  window.__rec = rec;
}
"""

SUMMARY_JS = """
([t0, t1]) => {
  // Figures over the recorded samples between t0 and t1 (performance.now() times).
  const inside = window.__rec.samples.filter((s) => s.t >= t0 && s.t <= t1 && s.frames !== undefined);
  if (inside.length < 2) return null;
  const a = inside[0], b = inside[inside.length - 1];
  const seconds = (b.t - a.t) / 1000;
  return {
    seconds,
    fps: (b.frames - a.frames) / seconds,
    freezes: b.freezes - a.freezes,
    freezeS: b.freezeS - a.freezeS,
    samples: (b.samples || 0) - (a.samples || 0),
    concealedPct: b.samples > a.samples ? 100 * (b.concealed - a.concealed) / (b.samples - a.samples) : null,
    maxLevel: Math.max(...inside.map((s) => s.level || 0)),
    width: b.width,
  };
}
"""


@dataclass
class Recorder:
    """Talks to the in-page recorder installed by RECORDER_JS."""

    page: object

    def start(self, pc_expr: str, target_expr: str) -> None:
        self.page.evaluate(RECORDER_JS, [pc_expr, target_expr])

    def now(self) -> float:
        return self.page.evaluate("performance.now()")

    def event_count(self) -> int:
        return self.page.evaluate("window.__rec.events.length")

    def wait_event(self, name: str, since: int = 0, timeout_s: float = 30) -> dict:
        """Waits for event `name` among those recorded from index `since`; returns it."""
        predicate = f"() => window.__rec.events.slice({since}).find((e) => e.type === {name!r})"
        return self.page.wait_for_function(predicate, timeout=timeout_s * 1000).json_value()

    def wait_frames(self, frames: int, timeout_s: float = 30) -> None:
        """Waits until `frames` more video frames are decoded than now."""
        start = self.page.evaluate("(window.__rec.samples.at(-1) || {}).frames || 0")
        self.page.wait_for_function(
            f"() => ((window.__rec.samples.at(-1) || {{}}).frames || 0) >= {start + frames}",
            timeout=timeout_s * 1000,
        )

    def summary(self, t0: float, t1: float) -> dict:
        result = self.page.evaluate(SUMMARY_JS, [t0, t1])
        assert result is not None, "no stats recorded in that interval"
        return result


def video_variation_js(video_expr: str) -> str:
    """JS returning the standard deviation of the current video frame's grey levels."""
    return f"""() => {{
      const video = {video_expr};
      const canvas = document.createElement("canvas");
      canvas.width = video.videoWidth; canvas.height = video.videoHeight;
      const ctx = canvas.getContext("2d");
      ctx.drawImage(video, 0, 0);
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let sum = 0, sq = 0, n = 0;
      for (let i = 0; i < data.length; i += 16) {{
        const g = (data[i] + data[i + 1] + data[i + 2]) / 3;
        sum += g; sq += g * g; n++;
      }}
      const mean = sum / n;
      return {{ mean, std: Math.sqrt(sq / n - mean * mean), width: canvas.width, height: canvas.height }};
    }}"""


def watch(page: object) -> None:
    """Collects console errors (with the resource's URL) and uncaught exceptions in `page.problems`."""
    problems: list[str] = []

    def on_console(msg: object) -> None:
        if msg.type == "error":
            problems.append(f"{msg.text} ({msg.location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
