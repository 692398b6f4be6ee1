"""Batching across sessions gives the frames each job gets alone (tiny MuseTalk weights)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.render.base import RenderJob
from streamer.render.lite import LiteRenderer
from streamer.render.musetalk import MuseTalkRenderer
from tests.support.tiny_musetalk import build_tiny_models, speech_like

BOXES = np.array([[40, 30, 200, 230], [44, 28, 206, 232], [38, 34, 198, 236]], dtype=np.int32)


def template(renderer, template_id: str, seed: int) -> PreparedTemplate:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (30, 28, 3), dtype=np.uint8), (280, 260))
    frames = np.stack([np.roll(base, k * 3, axis=1) for k in range(3)])
    bare = PreparedTemplate(
        id=template_id,
        name=template_id,
        kind="video",
        frames=frames,
        face_boxes=BOXES,
        mouth=np.tile(np.array([[128.0, 170.0]], np.float32), (3, 1)),
        blend_boxes=BOXES,
        blend_masks=np.zeros((3, 256, 256), np.uint8),
        renderer=renderer.name,
        welcome=None,
    )
    return dataclasses.replace(bare, extras=renderer.prepare(bare).extras)


def jobs(templates: list[PreparedTemplate]) -> list[tuple[PreparedTemplate, RenderJob]]:
    """Two sessions on each of two templates, windows of different lengths and offsets."""
    out = []
    for k, (t, session) in enumerate([(0, "a"), (1, "b"), (0, "c"), (1, "d")]):
        audio = speech_like(1.0 + 0.2 * k, seed=10 + k)
        first, count = 2 * k, 3 + k
        job = RenderJob(
            templates[t].id,
            np.arange(first, first + count, dtype=np.int64),
            audio,
            first,
            final=k % 2 == 0,
            session_id=session,
        )
        out.append((templates[t], job))
    return out


@pytest.fixture(scope="module")
def musetalk(tmp_path_factory) -> MuseTalkRenderer:
    models = build_tiny_models(tmp_path_factory.mktemp("musetalk") / "models")
    return MuseTalkRenderer(models, "cpu", Settings(batch_size=8))


def test_musetalk_batched_equals_unbatched_across_sessions_and_templates(musetalk):
    items = jobs([template(musetalk, "one", 1), template(musetalk, "two", 2)])
    batched = musetalk.render_batch(items)  # 18 frames of four jobs: calls of 8, 8 and 2
    assert [c.shape[0] for c in batched] == [3, 4, 5, 6]
    for (t, job), crops in zip(items, batched, strict=True):
        alone = musetalk.render(t, job)
        assert np.abs(crops.astype(int) - alone.astype(int)).max() <= 1  # ≤ 1/255 per pixel
    # It is really their own: a job's crops differ from another's over the same frames.
    assert np.abs(batched[0].astype(int) - batched[2][:3].astype(int)).mean() > 0.5


def test_lite_batches_the_same_way():
    lite = LiteRenderer()
    items = jobs([template(lite, "one", 1), template(lite, "two", 2)])
    for (t, job), crops in zip(items, lite.render_batch(items), strict=True):
        assert np.array_equal(crops, lite.render(t, job))
