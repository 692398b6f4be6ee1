"""Composing in I420: the same picture as the BGR compositor after libswscale, at a fraction of it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamer.avatar.face import crop_face
from streamer.avatar.prepared import WelcomeClip
from streamer.avatar.sources import discover
from streamer.render.base import RenderJob
from streamer.render.lite import LiteRenderer
from streamer.render.prepare import load_or_prepare
from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT
from streamer.video.compositor import compose, compose_i420
from streamer.video.yuv import YuvTemplate, planes, swscale_i420

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def photo(cache):
    return load_or_prepare(discover(TEMPLATES)["astronaut"], LiteRenderer(), cache, progress=False)


@pytest.fixture(scope="module")
def video(cache):
    return load_or_prepare(discover(TEMPLATES)["astronaut_loop"], LiteRenderer(), cache, progress=False)


def speech_crops(template, units: int = 12) -> np.ndarray:
    """Lite crops of tone bursts: a mouth that opens and closes."""
    t = np.arange(units * MODEL_SAMPLES_PER_UNIT) / MODEL_RATE
    audio = (0.5 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    job = RenderJob(template.id, np.arange(units, dtype=np.int64), audio, first_unit=0, final=True)
    return LiteRenderer().render(template, job)


def errors(template, position: int, crop: np.ndarray) -> dict[str, tuple[int, float]]:
    """Max and mean |YUV path - BGR path then libswscale| per plane."""
    ref = planes(swscale_i420(compose(template, position, crop)))
    got = planes(compose_i420(template, position, crop))
    return {
        name: (
            int(np.abs(a.astype(int) - b).max()),
            float(np.abs(a.astype(int) - b).mean()),
        )
        for name, a, b in zip("YUV", got, ref, strict=True)
    }


def test_idle_frames_are_the_cached_planes_of_the_template_converted_once(photo, video):
    for template in (photo, video):
        yuv = YuvTemplate.of(template)
        assert YuvTemplate.of(template) is yuv  # one per template per process
        for position in (0, 1, 5, 2 * template.frame_count + 3):
            i = template.frame_at(position)
            out = compose_i420(template, position, None)
            assert out is yuv.frame(i) and not out.flags.writeable
            assert out.shape == (template.height * 3 // 2, template.width)
            assert np.array_equal(out, swscale_i420(template.frames[i]))


def test_composed_frames_are_within_2_of_the_bgr_path_on_every_plane(photo, video):
    for template in (photo, video):
        crops = speech_crops(template)
        cases = [(p, crops[p]) for p in range(0, len(crops), 3)]
        cases += [
            (0, np.zeros((256, 256, 3), np.uint8)),
            (
                1,
                crop_face(
                    template.frames[1 % template.frame_count],
                    template.face_boxes[1 % template.frame_count],
                ),
            ),
        ]
        for position, crop in cases:
            err = errors(template, position, crop)
            assert max(e[0] for e in err.values()) <= 2, err
            assert max(e[1] for e in err.values()) < 0.05, err


def test_a_crop_changes_only_its_box_and_leaves_the_cache_untouched(photo):
    cached = compose_i420(photo, 0, None).copy()
    out = compose_i420(photo, 0, np.zeros((256, 256, 3), np.uint8))
    assert np.array_equal(compose_i420(photo, 0, None), cached)
    box = YuvTemplate.of(photo).box(0)
    y_changed = planes(out)[0] != planes(cached)[0]
    assert y_changed.any()
    y_changed[box.y1 : box.y2, box.x1 : box.x2] = False
    assert not y_changed.any()
    fx1, fy1, fx2, fy2 = (int(v) for v in photo.face_boxes[0])
    assert planes(out)[0][fy1 + (fy2 - fy1) * 3 // 4, (fx1 + fx2) // 2] < 20  # black jaw (Y ≥ 16)
    assert np.array_equal(
        planes(out)[0][: fy1 + (fy2 - fy1) // 2],
        planes(cached)[0][: fy1 + (fy2 - fy1) // 2],
    )


def test_welcome_crops_are_blended_once_per_process(photo, monkeypatch):
    crops = speech_crops(photo, 4)
    clip = WelcomeClip(np.arange(4, dtype=np.int64), crops, np.zeros(4 * 1920, np.int16))
    template = replace(photo, welcome=clip)
    yuv = YuvTemplate.of(template)
    calls = []
    blend = yuv._patch
    monkeypatch.setattr(yuv, "_patch", lambda *a: calls.append(1) or blend(*a))
    first = [compose_i420(template, k, clip.crops[k]).copy() for k in range(4)]
    again = [compose_i420(template, k, clip.crops[k]) for k in range(4)]
    assert len(calls) == 4  # the second pass reused every patch
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    other = crops[1].copy()  # same pixels, not the clip's array: blended afresh
    assert np.array_equal(compose_i420(template, 1, other), first[1]) and len(calls) == 5


def test_a_box_reaching_past_the_frame_edge_is_clipped(photo):
    boxes = photo.face_boxes.copy()
    boxes[:, [0, 2]] -= boxes[0, 0] + 20  # face box 20 px past the left edge
    blend = photo.blend_boxes.copy()
    blend[:, [0, 2]] -= photo.blend_boxes[0, 0] + 40
    template = replace(photo, face_boxes=boxes, blend_boxes=blend)
    out = compose_i420(template, 0, np.zeros((256, 256, 3), np.uint8))
    changed = planes(out)[0] != planes(compose_i420(template, 0, None))[0]
    assert changed.any() and not changed[:, int(boxes[0, 2]) + 1 :].any()
