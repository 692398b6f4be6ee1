"""Preprocess a template for a renderer once, and reuse the cache on every start."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamer import audio
from streamer.avatar import cache
from streamer.avatar.face import FaceTrack, detect_faces, fan_landmarker, has_fan
from streamer.avatar.masks import blend_boxes, jaw_masks
from streamer.avatar.prepared import PreparedTemplate, WelcomeClip
from streamer.avatar.sources import TemplateSource, file_sha256, load_frames
from streamer.errors import StreamerError
from streamer.render.base import OwnFaces, Renderer, RenderJob
from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT, OUT_RATE, OUT_SAMPLES_PER_UNIT

log = logging.getLogger(__name__)

MAX_FRAMES = 250
WELCOME_WINDOW = 25
"""Units rendered per job when rendering the welcome clip."""
FACES_VERSION = "3"
"""Bump when face boxes, mouth centres or masks are computed differently."""


def cache_key(source: TemplateSource, renderer: Renderer, models: Path | None = None) -> dict[str, str]:
    """Everything besides the source file that shaped a template's cache."""
    key = {
        "renderer": renderer.name,
        "faces": FACES_VERSION + ("" if isinstance(renderer, OwnFaces) else "+fan" if has_fan(models) else "+haar"),
        "max_frames": str(MAX_FRAMES),
        "welcome_text": source.welcome_text,
        "welcome_audio": file_sha256(source.welcome_audio) if source.welcome_audio else "",
    }
    key |= {f"renderer.{k}": str(v) for k, v in renderer.cache_key().items()}
    return key


def renderer_cache(cache_dir: Path, renderer: str) -> Path:
    """Each renderer keeps its own cache (`cache/<renderer>/<template>/`), so switching renderer
    (or rendering offline with another one) never throws the other's away."""
    return Path(cache_dir) / renderer


def is_fresh(source: TemplateSource, renderer: Renderer, cache_dir: Path, models: Path | None = None) -> bool:
    """Whether the cache of `source` matches the file and renderer (reads the manifest only)."""
    manifest = cache.read_manifest(renderer_cache(cache_dir, renderer.name), source.id)
    if manifest is None:
        return False
    return cache.manifest_matches(manifest, file_sha256(source.path), cache_key(source, renderer, models)) is None


@contextmanager
def _bar(show: bool, desc: str) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr fed by (done, total) callbacks; a no-op callback when hidden."""
    if not show:
        yield lambda done, total: None
        return
    with tqdm(desc=desc, file=sys.stderr, unit="frame", leave=True) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield update


def load_or_prepare(
    source: TemplateSource,
    renderer: Renderer,
    cache_dir: Path,
    force: bool = False,
    progress: bool = True,
    models: Path | None = None,
) -> PreparedTemplate:
    """The prepared template from the cache when it is fresh, else built now and cached.

    `models`: the folder that may hold face-alignment weights for landmark face boxes.
    The template's arrays (frames included) are memory-mapped from the cache, not decoded.
    """
    folder = renderer_cache(cache_dir, renderer.name)
    sha = file_sha256(source.path)
    key = cache_key(source, renderer, models)
    if not force:
        cached = cache.load(folder, source.id, None, sha, key)
        if cached is not None:
            log.info("template %s loaded from the cache (%s)", source.id, renderer.name)
            return cached
    started = time.monotonic()
    template = _build(source, load_frames(source, MAX_FRAMES), renderer, progress, models)
    cache.save(template, folder, sha, key)
    template = cache.load(folder, source.id, None, sha, key) or template  # mapped, not held
    welcome = f"{template.welcome.seconds:.1f} s welcome" if template.welcome else "no welcome"
    log.info(
        "prepared template %s for %s: %d frames, %s, in %.1f s",
        source.id,
        renderer.name,
        template.frame_count,
        welcome,
        time.monotonic() - started,
    )
    return template


def _build(
    source: TemplateSource, frames: np.ndarray, renderer: Renderer, progress: bool, models: Path | None
) -> PreparedTemplate:
    with _bar(progress, f"{source.id}: faces") as update:
        faces = _faces(frames, source.path.name, renderer, models, update)
    if faces.degraded:
        log.warning("template %s: %s prepared degraded: %s", source.id, renderer.name, ", ".join(faces.reasons))
    blend = blend_boxes(faces.boxes)
    template = PreparedTemplate(
        id=source.id,
        name=source.name,
        kind=source.kind,
        frames=frames,
        face_boxes=faces.boxes,
        mouth=faces.mouth,
        blend_boxes=blend,
        blend_masks=jaw_masks(faces.boxes, blend),
        renderer=renderer.name,
        welcome=None,
        welcome_text=source.welcome_text,
        faces=faces.source,
        degraded=faces.degraded,
    )
    with _bar(progress, f"{source.id}: {renderer.name} prepare") as update:
        template = renderer.prepare(template, update).applied_to(template)
    return dataclasses.replace(template, welcome=_welcome(source, template, renderer, progress))


def _faces(
    frames: np.ndarray, name: str, renderer: Renderer, models: Path | None, update: Callable[[int, int], None]
) -> FaceTrack:
    """The renderer's own face boxes when it finds them (`OwnFaces`: MuseTalk's DWPose), else
    FAN landmarks when installed under `models`, else Haar boxes."""
    if isinstance(renderer, OwnFaces):
        return renderer.faces(frames, name, update)
    if has_fan(models):
        return detect_faces(frames, name, fan_landmarker(models), update, source="fan")  # type: ignore[arg-type]
    return detect_faces(frames, name, None, update)


def _welcome(
    source: TemplateSource, template: PreparedTemplate, renderer: Renderer, progress: bool
) -> WelcomeClip | None:
    path = source.welcome_audio or (source.path if source.kind == "video" else None)
    if path is None:
        return None
    try:
        model_audio = audio.decode_file(path, MODEL_RATE)
        out_audio = audio.decode_file(path, OUT_RATE)
    except StreamerError as exc:
        if source.welcome_audio is not None:
            raise
        log.info("template %s has no welcome audio (%s)", source.id, exc)
        return None
    units = -(-len(model_audio) // MODEL_SAMPLES_PER_UNIT)
    if units == 0:
        return None
    positions = np.arange(units, dtype=np.int64)
    crops = []
    with _bar(progress, f"{source.id}: welcome") as update:
        for start in range(0, units, WELCOME_WINDOW):
            window = positions[start : start + WELCOME_WINDOW]
            job = RenderJob(source.id, window, model_audio, first_unit=start, final=True)
            crops.append(renderer.render(template, job))
            update(start + len(window), units)
    pcm = np.zeros(units * OUT_SAMPLES_PER_UNIT, np.int16)
    clipped = np.clip(out_audio[: len(pcm)], -1.0, 1.0)
    pcm[: len(clipped)] = np.round(clipped * 32767).astype(np.int16)
    return WelcomeClip(positions=positions, crops=np.concatenate(crops), audio=pcm)
