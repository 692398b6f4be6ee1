"""The template cache: round trip, stale when the source or key changes, corrupt never trusted."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil

import numpy as np
import pytest

from streamer import resources
from streamer.avatar import cache
from streamer.avatar.sources import discover
from streamer.render.base import Preparation
from streamer.render.lite import LiteRenderer
from streamer.render.prepare import is_fresh, load_or_prepare

TEMPLATES = resources.TEMPLATES


class KeyedLite(LiteRenderer):
    """The lite renderer with a different cache key, as a model or setting change would give."""

    def cache_key(self) -> dict[str, str]:
        return {"lite": "other"}


@pytest.fixture
def setup(tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    for name in ("astronaut.png", "astronaut.json", "welcome.wav"):
        shutil.copy(TEMPLATES / name, templates / name)
    source = discover(templates)["astronaut"]
    return source, tmp_path / "cache"


def assert_same(a, b):
    for field in ("id", "name", "kind", "renderer", "welcome_text"):
        assert getattr(a, field) == getattr(b, field)
    for field in ("frames", "face_boxes", "mouth", "blend_boxes", "blend_masks"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field
    for field in ("positions", "crops", "audio"):
        assert np.array_equal(getattr(a.welcome, field), getattr(b.welcome, field)), field
    assert a.extras.keys() == b.extras.keys()


def test_round_trip(setup):
    source, cache_dir = setup
    r = LiteRenderer()
    assert not is_fresh(source, r, cache_dir)
    built = load_or_prepare(source, r, cache_dir, progress=False)
    assert is_fresh(source, r, cache_dir)
    manifest = json.loads((cache_dir / "lite" / "astronaut" / "manifest.json").read_text())
    assert manifest["format"] == cache.FORMAT and manifest["key"]["renderer"] == "lite"
    assert manifest["key"]["renderer.lite"] == r.cache_key()["lite"]
    assert manifest["arrays"]["blend_masks"]["shape"] == [1, 256, 256]
    assert built.welcome is not None and built.welcome.audio.shape == (built.welcome.units * 1920,)
    assert built.welcome.audio.dtype == np.int16 and np.abs(built.welcome.audio).max() > 3000
    loaded = cache.load(cache_dir / "lite", "astronaut", built.frames, manifest["source_sha256"], manifest["key"])
    assert loaded is not None
    assert_same(built, loaded)
    assert not list((cache_dir / "lite").glob(".*"))  # no temporary folders left behind


def test_welcome_clip_speaks(setup):
    source, cache_dir = setup
    t = load_or_prepare(source, LiteRenderer(), cache_dir, progress=False)
    moving = [not np.array_equal(c, t.welcome.crops[0]) for c in t.welcome.crops]
    assert abs(t.welcome.seconds - 6.1) < 0.1 and sum(moving) > t.welcome.units // 3


def test_stale_when_source_changes(setup, caplog):
    source, cache_dir = setup
    r = LiteRenderer()
    load_or_prepare(source, r, cache_dir, progress=False)
    img = source.path.read_bytes()
    import cv2

    frame = cv2.imread(str(source.path))
    frame[0, 0] = 255 - frame[0, 0]
    cv2.imwrite(str(source.path), frame)
    assert source.path.read_bytes() != img
    assert not is_fresh(source, r, cache_dir)
    with caplog.at_level(logging.WARNING, logger="streamer.avatar.cache"):
        rebuilt = load_or_prepare(source, r, cache_dir, progress=False)
    assert "template file changed" in caplog.text
    assert rebuilt.frames[0, 0, 0].tolist() == frame[0, 0].tolist()
    assert is_fresh(source, r, cache_dir)


def test_stale_when_renderer_key_changes(setup, caplog):
    source, cache_dir = setup
    load_or_prepare(source, LiteRenderer(), cache_dir, progress=False)
    assert not is_fresh(source, KeyedLite(), cache_dir)
    with caplog.at_level(logging.WARNING, logger="streamer.avatar.cache"):
        load_or_prepare(source, KeyedLite(), cache_dir, progress=False)
    assert "renderer or settings changed" in caplog.text
    assert is_fresh(source, KeyedLite(), cache_dir) and not is_fresh(source, LiteRenderer(), cache_dir)


def _in_memory(t):
    """A copy of `t` that does not map the cache files (which the corruption tests damage)."""
    welcome = dataclasses.replace(
        t.welcome, **{k: np.array(getattr(t.welcome, k)) for k in ("positions", "crops", "audio")}
    )
    arrays = {k: np.array(getattr(t, k)) for k in ("frames", "face_boxes", "mouth", "blend_boxes", "blend_masks")}
    return dataclasses.replace(t, welcome=welcome, extras={k: np.array(v) for k, v in t.extras.items()}, **arrays)


@pytest.mark.parametrize("damage", ["bad_json", "truncated_npy", "wrong_shape", "missing_npy"])
def test_corrupt_cache_is_rebuilt(setup, caplog, damage):
    source, cache_dir = setup
    r = LiteRenderer()
    good = _in_memory(load_or_prepare(source, r, cache_dir, progress=False))
    folder = cache_dir / "lite" / "astronaut"
    if damage == "bad_json":
        (folder / "manifest.json").write_text("{not json")
    elif damage == "truncated_npy":
        data = (folder / "blend_masks.npy").read_bytes()
        (folder / "blend_masks.npy").write_bytes(data[: len(data) // 2])
    elif damage == "wrong_shape":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["arrays"]["face_boxes"]["shape"] = [2, 4]
        (folder / "manifest.json").write_text(json.dumps(manifest))
    else:
        (folder / "frames.npy").unlink()
    with caplog.at_level(logging.WARNING, logger="streamer.avatar.cache"):
        rebuilt = load_or_prepare(source, r, cache_dir, progress=False)
    assert len([rec for rec in caplog.records if rec.name == "streamer.avatar.cache"]) == 1
    assert "not used" in caplog.text
    assert_same(good, rebuilt)
    assert is_fresh(source, r, cache_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (
        cache.load(cache_dir / "lite", "astronaut", good.frames, manifest["source_sha256"], manifest["key"]) is not None
    )


def test_missing_cache_is_none(tmp_path):
    frames = np.zeros((1, 8, 8, 3), np.uint8)
    assert cache.load(tmp_path, "nothing", frames, "0" * 64, {}) is None


def test_prepare_uses_renderer_blend_masks(setup):
    source, cache_dir = setup

    class MaskingLite(LiteRenderer):
        def prepare(self, template, progress=None):
            return Preparation(
                {"bias": np.ones((template.frame_count, 2), np.float32)},
                blend_masks=np.full((template.frame_count, 256, 256), 7, np.uint8),
            )

        def cache_key(self):
            return {"lite": "masking"}

    t = load_or_prepare(source, MaskingLite(), cache_dir, progress=False)
    assert np.all(t.blend_masks == 7) and list(t.extras) == ["bias"]
    again = load_or_prepare(source, MaskingLite(), cache_dir, progress=False)
    assert np.all(again.blend_masks == 7) and np.array_equal(again.extras["bias"], t.extras["bias"])


def test_weight_files_are_hashed_once_per_size_and_mtime(tmp_path, monkeypatch):
    import os

    from streamer.avatar import hashing

    weights, store = tmp_path / "unet.pth", tmp_path / "cache" / "hashes.json"
    weights.write_bytes(b"x" * 1000)
    first = hashing.file_sha256(weights, store)
    assert json.loads(store.read_text()) == {hashing._stamp(weights): first}
    calls = []
    real = hashing._digest
    monkeypatch.setattr(hashing, "_digest", lambda path: calls.append(path) or real(path))
    hashing._memo.clear()  # a new process: the store answers, the file is not read
    assert hashing.file_sha256(weights, store) == first and calls == []
    weights.write_bytes(b"y" * 1000)  # same size, new mtime: hashed again
    os.utime(weights, ns=(1, 1))
    second = hashing.file_sha256(weights, store)
    assert second != first and len(calls) == 1
    store.write_text("not json")  # a broken store costs a re-hash, never a wrong answer
    hashing._memo.clear()
    assert hashing.file_sha256(weights, store) == second and len(calls) == 2


def test_cached_arrays_are_mapped_read_only_not_copied(setup):
    source, cache_dir = setup
    load_or_prepare(source, LiteRenderer(), cache_dir, progress=False)
    t = load_or_prepare(source, LiteRenderer(), cache_dir, progress=False)  # from the cache
    for name in ("frames", "face_boxes", "blend_masks"):
        a = getattr(t, name)
        assert isinstance(a, np.memmap) and not a.flags.writeable, name
    assert isinstance(t.welcome.crops, np.memmap)
    manifest = json.loads((cache_dir / "lite" / "astronaut" / "manifest.json").read_text())
    assert manifest["format"] == cache.FORMAT == 2 and "frames" in manifest["arrays"]
