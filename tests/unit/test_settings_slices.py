"""Settings slices (streamer/settings_slices.py): `Settings` stays one flat set of names that the
TOML file, STREAMER_* variables and the command line all set, and a render worker is given only
its `RenderSettings` slice."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from streamer.config import Settings, load_settings, render_slice, settings_to_json
from streamer.errors import BadInput
from streamer.pool.front.ray_pool import actor_settings
from streamer.pool.worker.ray_actor import RenderActor
from streamer.settings_slices import ListeningSettings, RenderSettings, ReplySettings, SpeechSettings

SLICES = (SpeechSettings, RenderSettings, ReplySettings, ListeningSettings)


def test_every_slice_name_is_a_flat_setting_set_by_file_environment_and_command_line(tmp_path: Path):
    names = [f.name for f in fields(Settings)]
    assert len(names) == len(set(names))
    for part in SLICES:
        assert {f.name for f in fields(part)} <= set(names) and issubclass(Settings, part)
    toml = tmp_path / "s.toml"
    toml.write_text(
        'batch_size = 8\nmusetalk_mask = "geometric"\nllm_model = "from-file"\nasr_language = "zh"\nwindow_s = 0.8\n'
    )
    env = {"STREAMER_SIM_PER_FRAME_MS": "2.5", "STREAMER_LLM_TEMPERATURE": "0.1", "STREAMER_VAD_THRESHOLD": "0.3"}
    cli = {"renderer": "sim", "devices": "sim:0,sim:1", "tts": "none", "asr": "none"}
    s = load_settings(toml, cli, env)
    assert (s.batch_size, s.musetalk_mask, s.llm_model, s.asr_language) == (8, "geometric", "from-file", "zh")
    assert s.window_s == 0.8
    assert (s.sim_per_frame_ms, s.llm_temperature, s.vad_threshold) == (2.5, 0.1, 0.3)
    assert (s.renderer, s.devices, s.tts, s.asr) == ("sim", ("sim:0", "sim:1"), "none", "none")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("first_window_s", 0.01),
        ("renderer", "magic"),
        ("musetalk_faces", "x"),
        ("tts", "x"),
        ("asr", "x"),
        ("llm_max_tokens", 0),
    ],
)
def test_each_slice_still_checks_its_own_values(name: str, value: object):
    with pytest.raises(BadInput):
        load_settings(cli={name: value}, environ={})


async def test_a_render_actor_is_given_its_slice_alone_and_refuses_the_whole_settings(tmp_path: Path):
    settings = Settings(
        renderer="sim", cache_dir=tmp_path, sim_fixed_ms=1.0, sim_per_frame_ms=0.1, key="k", llm_model="not-for-workers"
    )
    sent = actor_settings(settings)
    assert set(sent) == {f.name for f in fields(RenderSettings)}
    actor = RenderActor(0, "sim:0", sent)
    try:
        assert type(actor.server.settings) is RenderSettings and actor.server.settings == render_slice(settings)
    finally:
        actor.server.queue.close()
    with pytest.raises(TypeError, match="unexpected keyword"):
        RenderActor(0, "sim:0", settings_to_json(settings))
