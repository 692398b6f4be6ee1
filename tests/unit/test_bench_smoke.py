"""The benchmarks run end to end at their smallest settings and report every figure (no timing asserts)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from bench import conversation, encoder, latency, lite

MACHINE_KEYS = {"cpu", "cores", "python", "torch", "av", "gpus"}
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def check(result: dict, keys: set[str]) -> None:
    assert keys <= result.keys(), keys - result.keys()
    assert result["machine"].keys() >= MACHINE_KEYS
    assert json.loads(json.dumps(result)) == result  # one plain JSON object


@needs_espeak
def test_encoder_bench_compares_four_configs_and_restores_the_cores():
    cores = os.sched_getaffinity(0)
    result = encoder.main(["--frames", "5", "--warmup", "2", "--seconds", "0.04"])
    assert os.sched_getaffinity(0) == cores  # the one-core pinning is undone
    check(result, {"compose_convert_ms_per_frame", "configs", "target_sessions_per_core", "met", "frame_size"})
    assert result["frame_size"] == [512, 512]
    assert set(result["configs"]) == set(encoder.CONFIGS)
    assert result["compose_convert_ms_per_frame"] > 0 and result["idle_frame_ms"] >= 0
    for config in result["configs"].values():
        assert {"encode_ms_per_frame", "sessions_per_core", "sustained_sessions_no_stall", "remb"} <= config.keys()
        assert config["encode_ms_per_frame"] > 0
        # The figures agree with each other: one 40 ms slot holds `sessions_per_core` frames.
        total = config["encode_ms_per_frame"] + result["compose_convert_ms_per_frame"]
        assert config["total_ms_per_frame"] == pytest.approx(total, abs=0.011)
        # (from the unrounded figures: the rounded ones may put the slot's edge one frame over)
        assert int(40 // (total + 0.02)) <= config["sessions_per_core"] <= int(40 // max(total - 0.02, 0.01))
        assert 0 <= config["sustained_sessions_no_stall"] <= max(config["sessions_per_core"], 1)
    expected = result["configs"]["h264_stock_medium"]["encode_ms_per_frame"] / ours_h264(result)
    assert result["speedup_h264_ours_vs_stock"] == pytest.approx(expected, rel=0.02)
    # The REMB check is deterministic: aiortc rebuilds on ±30 % (there and back), ours never.
    assert result["configs"]["h264_stock_medium"]["remb"]["rebuilds_+8%"] == 0
    assert result["configs"]["h264_stock_medium"]["remb"]["rebuilds_+30%"] == 2
    assert result["configs"]["h264_ours_superfast"]["remb"]["rebuilds_total"] == 0
    assert result["configs"]["vp8_ours_clamped"]["remb"]["rebuilds_total"] == 0


def ours_h264(result: dict) -> float:
    return result["configs"]["h264_ours_superfast"]["encode_ms_per_frame"]


@needs_espeak
def test_lite_bench_reports_render_pool_and_compose():
    result = lite.main(["--repeats", "1"])
    check(result, {"render_one_core", "compose_ms_per_frame", "pool_round_trip_one_cpu_worker"})
    assert set(result["render_one_core"]) == {"window_5", "window_25"}
    for speed in result["render_one_core"].values():
        assert speed["ms_per_frame"] > 0
        assert speed["frames_per_s"] == pytest.approx(1000 / speed["ms_per_frame"], rel=0.05)
        assert speed["x_real_time"] == pytest.approx(speed["frames_per_s"] / 25, rel=0.05)
    assert result["compose_ms_per_frame"] > 0
    assert result["speech_seconds"] > 1  # espeak-ng spoke: the windows carried speech
    pool = result["pool_round_trip_one_cpu_worker"]
    assert pool["start_and_prepare_s"] > 0
    for window in ("window_5_ms", "window_25_ms"):
        assert pool[window]["count"] == 1 and 0 < pool[window]["p50"] <= pool[window]["max"]


@needs_espeak
def test_latency_bench_measures_an_upload_and_a_stream():
    result = latency.main(["--utterances", "1"])
    check(result, {"time_to_first_frame_ms", "fps", "stalls", "upload", "stream", "target_first_frame_ms", "met"})
    assert result["target_first_frame_ms"] == 120 and isinstance(result["met"], bool)
    for kind in ("upload", "stream"):
        part = result[kind]
        assert {"first_frame_ms", "av_offset_ms_median", "per_utterance"} <= part.keys()
        assert len(part["per_utterance"]) == 1
        assert part["first_frame_ms"]["count"] == 1  # the mouth was seen moving
        assert part["first_frame_ms"]["p50"] > 0 and part["missed_first_frame"] == 0
        assert abs(part["av_offset_ms_median"]) <= 80  # lip sync within two frames
    assert result["upload"]["server_first_frame_ms"]["count"] == 1
    assert result["stream"]["server_first_frame_ms_all_utterances"]["count"] == 2
    assert result["renderer"] == "lite" and 20 < result["fps"] < 30 and isinstance(result["stalls"], int)
    assert result["time_to_first_frame_ms"] > 0 and result["server_start_s"] > 0
    assert result["met"] == (result["upload"]["first_frame_after_onset_ms"]["p95"] <= 120)


@needs_espeak
def test_conversation_bench_measures_a_turn_and_an_interrupt():
    result = conversation.main(["--turns", "1", "--interrupts", "1", "--first-token-ms", "50"])
    check(result, {"llm_first_token_ms", "first_sentence_ms", "own_ms", "llm_hang_up_ms", "target_own_ms", "met"})
    assert result["target_own_ms"] == 250 and isinstance(result["met"], bool)
    for key in ("llm_first_token_ms", "first_sentence_ms", "tts_first_audio_ms", "first_frame_ms", "own_ms"):
        assert result[key]["count"] == 1, key
    assert result["llm_hang_up_ms"]["count"] == 1 and result["viewer_interrupted_ms"]["count"] == 1
