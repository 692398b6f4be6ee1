"""`render_file` end to end: the shipped astronaut, tiny MuseTalk weights, a playable mp4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from streamer.config import ROOT, Settings
from streamer.errors import BadInput, NotFound
from streamer.video.offline import render_file
from tests.support.tiny_musetalk import speech_like, tiny_musetalk_settings, write_wav

SECONDS = 1.3


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return tiny_musetalk_settings(tmp_path_factory.mktemp("offline"), batch_size=16)


def test_render_file_writes_a_playable_mp4_of_the_right_length(settings: Settings, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "speech.wav", speech_like(SECONDS, seed=10))
    out, feats = tmp_path / "out.mp4", tmp_path / "features.npy"
    figures = render_file(settings, "astronaut", audio, out, save_features=feats, progress=False)
    units = int(np.ceil(SECONDS * 25))
    assert figures["renderer"] == "musetalk" and figures["frames"] == units
    features = np.load(feats, allow_pickle=False)
    assert features.shape == (units, 50, 384) and features.dtype == np.float32

    with av.open(str(out)) as container:
        video, sound = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and sound.codec_context.name == "aac"
        assert sound.rate == 48_000
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == units
    assert float(video.duration * video.time_base) == pytest.approx(units / 25, abs=0.05)
    template = ROOT / "templates" / "astronaut.png"
    import cv2

    still = cv2.imread(str(template))[: frames[0].shape[0], : frames[0].shape[1]]
    changed = np.abs(frames[0].astype(int) - still.astype(int)).max(axis=2) > 40
    assert changed.mean() > 0.002  # the rendered face was pasted in
    assert changed.mean() < 0.5  # … and only there


def test_render_file_refuses_unknown_templates_and_lite_features(settings: Settings, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "a.wav", speech_like(0.2))
    with pytest.raises(NotFound):
        render_file(settings, "nobody", audio, tmp_path / "x.mp4", progress=False)
    lite = Settings(
        templates_dir=settings.templates_dir, cache_dir=settings.cache_dir, renderer="lite", devices=("cpu",)
    )
    with pytest.raises(BadInput, match="musetalk"):
        render_file(lite, "astronaut", audio, tmp_path / "x.mp4", tmp_path / "f.npy", progress=False)
