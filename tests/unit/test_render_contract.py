"""The renderer contract (streamer/render/base.py): `prepare` returns a typed `Preparation`, and
the optional parts (`OwnFaces`, `AudioFeatures`) are declared protocols, never probed by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamer import resources
from streamer.avatar.face import FaceTrack
from streamer.avatar.sources import discover
from streamer.config import Settings
from streamer.errors import BadInput
from streamer.render.base import AudioFeatures, OwnFaces, Preparation, Renderer
from streamer.render.lite import LiteRenderer
from streamer.render.prepare import cache_key
from streamer.render.sim import SimRenderer
from streamer.video.offline import render_file
from tests.fakes import tiny_template


class FaceFindingLite(LiteRenderer):
    """The lite renderer with face boxes of its own, as MuseTalk has (DWPose)."""

    def faces(self, frames: np.ndarray, name: str, progress: Callable[[int, int], None] | None = None) -> FaceTrack:
        n = frames.shape[0]
        return FaceTrack(np.zeros((n, 4), np.int32), np.zeros((n, 2), np.float32), "own")


@pytest.mark.parametrize("renderer", [LiteRenderer(), SimRenderer(0.0, 0.0)], ids=["lite", "sim"])
def test_lite_and_sim_prepare_nothing_and_have_no_optional_parts(renderer: Renderer):
    template = tiny_template(frames=2)
    prepared = renderer.prepare(template)
    assert prepared == Preparation()
    assert prepared.applied_to(template).blend_masks is template.blend_masks  # the shared masks stay
    assert not isinstance(renderer, OwnFaces) and not isinstance(renderer, AudioFeatures)


def test_a_renderer_with_its_own_faces_is_keyed_apart_from_the_shared_detection():
    source = discover(resources.TEMPLATES)["astronaut"]
    own = FaceFindingLite()
    assert isinstance(own, OwnFaces)
    assert cache_key(source, own)["faces"] != cache_key(source, LiteRenderer())["faces"]
    assert cache_key(source, LiteRenderer())["faces"].endswith("+haar")  # no FAN weights given


def test_a_preparation_with_masks_replaces_the_shared_ones():
    template = tiny_template(frames=2)
    masks = np.full((2, 256, 256), 9, np.uint8)
    ready = Preparation({"latents": np.ones((2, 1), np.float32)}, blend_masks=masks).applied_to(template)
    assert ready.blend_masks is masks and list(ready.extras) == ["latents"]


def test_saving_audio_features_needs_a_renderer_that_has_them(tmp_path: Path):
    with pytest.raises(BadInput, match="needs the musetalk renderer"):
        render_file(Settings(renderer="lite"), "astronaut", tmp_path / "a.wav", tmp_path / "o.mp4", tmp_path / "f.npy")
