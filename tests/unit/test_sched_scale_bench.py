"""bench/scale.py end to end at its smallest: real pool, sim workers, every figure reported."""

from __future__ import annotations

import json

from bench import scale


def test_scale_bench_raises_sessions_until_a_miss_and_reports_every_figure(capsys):
    result = scale.main(
        [
            "--devices",
            "1",
            "--fixed-ms",
            "20",
            "--per-frame-ms",
            "1",
            "--seconds",
            "1.5",
            "--max-sessions",
            "2",
            "--json",
        ]
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
    for key in (
        "sessions_per_device",
        "sessions_total",
        "missed_deadlines",
        "p95_window_ms",
        "frames_per_s_per_device",
        "mean_batch_frames",
        "host_cpu_pct",
        "valid",
    ):
        assert key in result, key
    assert next(level["sessions"] for level in result["levels"]) == 1
    assert all(level["windows"] >= 3 * level["sessions"] for level in result["levels"])
    assert result["model_sessions_per_device"] == round(32 / (20 + 32) * 1000 / 25, 2)
    if result["sessions_total"]:
        assert result["frames_per_s_per_device"] > 0 and result["mean_batch_frames"] >= 1
