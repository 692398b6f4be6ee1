"""The compositor: template frame when idle, crop blended only inside the blend box (its speed:
bench/lite.py and bench/encoder.py)."""

from __future__ import annotations

import numpy as np
import pytest

from streamer import resources
from streamer.avatar.face import crop_face
from streamer.avatar.sources import discover
from streamer.render.lite import LiteRenderer
from streamer.render.prepare import load_or_prepare
from streamer.video.compositor import compose

TEMPLATES = resources.TEMPLATES


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    source = discover(TEMPLATES)["astronaut"]
    return load_or_prepare(source, LiteRenderer(), tmp_path_factory.mktemp("cache"), progress=False)


def test_no_crop_returns_the_template_frame_itself(template):
    out = compose(template, 7, None)
    assert np.array_equal(out, template.frames[0])
    assert np.shares_memory(out, template.frames)  # no copy per frame


def test_crop_changes_only_pixels_inside_the_blend_box(template):
    before = {k: v.copy() for k, v in vars(template).items() if isinstance(v, np.ndarray)}
    crop = np.zeros((256, 256, 3), np.uint8)  # black: every weighted pixel changes
    out = compose(template, 0, crop)
    frame = template.frames[0]
    assert out.shape == frame.shape and out.dtype == np.uint8
    x1, y1, x2, y2 = template.blend_boxes[0]
    changed = np.any(out != frame, axis=2)
    assert changed.any()
    outside = changed.copy()
    outside[y1:y2, x1:x2] = False
    assert not outside.any()
    # The jaw changes fully; the eyes (upper face) do not.
    fx1, fy1, fx2, fy2 = template.face_boxes[0]
    assert out[fy1 + (fy2 - fy1) * 3 // 4, (fx1 + fx2) // 2].max() < 5
    assert not changed[fy1 : fy1 + (fy2 - fy1) // 2].any()
    for k, v in before.items():
        assert np.array_equal(getattr(template, k), v), k


def test_template_crop_blends_back_almost_unchanged(template):
    crop = crop_face(template.frames[0], template.face_boxes[0])
    out = compose(template, 0, crop).astype(int)
    assert np.abs(out - template.frames[0]).mean() < 0.5
