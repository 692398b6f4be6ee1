"""Settings: defaults < TOML file < STREAMER_* environment < command line."""

from pathlib import Path

import pytest

from streamer.config import Settings, load_settings, render_settings_from_json, render_slice, settings_to_json
from streamer.errors import BadInput


def test_each_layer_overrides_the_one_below(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('port = 9000\nwindow_s = 0.8\ndevices = ["cuda:0", "cuda:1"]\nx264_preset = "veryfast"\n')
    env = {"STREAMER_PORT": "9100", "STREAMER_WINDOW_S": "0.6", "STREAMER_FP16": "false"}
    s = load_settings(toml, {"port": 9200, "renderer": None}, env)
    assert s.port == 9200  # CLI beats env beats file
    assert s.window_s == 0.6  # env beats file
    assert s.devices == ("cuda:0", "cuda:1") and s.x264_preset == "veryfast"  # file beats defaults
    assert s.fp16 is False and s.renderer == Settings().renderer


def test_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(BadInput, match="unknown setting"):
        load_settings(cli={"nope": 1}, environ={})
    with pytest.raises(BadInput, match="number"):
        load_settings(environ={"STREAMER_PORT": "eighty"})
    with pytest.raises(BadInput, match="renderer"):
        load_settings(cli={"renderer": "magic"}, environ={})
    with pytest.raises(BadInput, match="models"):
        load_settings(cli={"renderer": "musetalk"}, environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = [")
    with pytest.raises(BadInput, match="config file"):
        load_settings(bad, environ={})


def test_settings_survive_the_trip_to_a_worker():
    s = load_settings(cli={"models": "/m", "devices": "cpu:2", "cors_origins": "http://a,http://b"}, environ={})
    back = render_settings_from_json(settings_to_json(render_slice(s)))
    assert back == render_slice(s) and back.models == Path("/m") and back.devices == ("cpu:2",)


def test_device_lists():
    from streamer.render.registry import devices

    assert devices(Settings(devices=("cpu:2",))) == ["cpu", "cpu"]
    assert devices(Settings(devices=("cuda:0", "cuda:3"))) == ["cuda:0", "cuda:3"]
    assert devices(Settings(renderer="lite")) == ["cpu"]
    with pytest.raises(BadInput):
        devices(Settings(devices=("tpu:1",)))


def test_listening_settings_are_read_and_checked(tmp_path):
    toml = tmp_path / "zh.toml"
    toml.write_text('asr = "openai"\nasr_url = "http://127.0.0.1:8000/v1"\nasr_language = "zh"\n')
    s = load_settings(toml, {"barge_in_min_speech_ms": 250}, {"STREAMER_TURN_END_SILENCE_MS": "500"})
    assert (s.asr, s.asr_url, s.asr_language, s.asr_model) == ("openai", "http://127.0.0.1:8000/v1", "zh", "whisper-1")
    assert s.barge_in_min_speech_ms == 250 and s.turn_end_silence_ms == 500
    d = Settings()
    assert (d.asr, d.vad_threshold, d.turn_min_speech_ms, d.turn_end_silence_ms, d.turn_max_s) == (
        "pocketsphinx",
        0.5,
        200,
        600,
        30,
    )
    assert (d.false_interruption_s, d.barge_in_min_speech_ms) == (1.5, 300)
    with pytest.raises(BadInput, match="asr_url"):
        load_settings(cli={"asr": "openai"}, environ={})
    with pytest.raises(BadInput, match="unknown asr"):
        load_settings(cli={"asr": "whisper"}, environ={})
    with pytest.raises(BadInput, match="vad_threshold"):
        load_settings(cli={"vad_threshold": 1.5}, environ={})
    with pytest.raises(BadInput, match="asr_workers"):
        load_settings(cli={"asr_workers": 0}, environ={})
