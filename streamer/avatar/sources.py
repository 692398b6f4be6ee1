"""Template discovery: which files in `templates/` are templates, and their frames."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from streamer.avatar.hashing import file_sha256
from streamer.errors import BadInput, NotFound, UnsupportedMedia

log = logging.getLogger(__name__)

__all__ = ["TemplateSource", "check_id", "discover", "file_sha256", "load_frames"]
"""`file_sha256` stays importable from here (server/app.py uses it)."""

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm")
_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class TemplateSource:
    id: str
    name: str
    kind: str
    """`photo` or `video`."""
    path: Path
    welcome_text: str
    welcome_audio: Path | None
    """Audio of the welcome line; None: a video template may use its own audio track."""


def check_id(s: str) -> str:
    """Return `s` if it is a valid template id; ids name files, so nothing else gets through."""
    if not isinstance(s, str) or not _ID.fullmatch(s):
        raise BadInput(f"invalid template id {s!r} (lowercase letters, digits, '-' and '_')")
    return s


def _sidecar(path: Path, root: Path) -> tuple[str, str, Path | None]:
    """Name, welcome text and welcome audio from `<stem>.json`; defaults when it is absent."""
    name, text, audio = path.stem, "", None
    side = path.with_suffix(".json")
    if not side.is_file():
        return name, text, audio
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"template sidecar {side.name} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise BadInput(f"template sidecar {side.name} must hold a JSON object")
    name = str(meta.get("name") or name)
    text = str(meta.get("welcome_text") or "")
    if meta.get("welcome_audio"):
        audio = (root / str(meta["welcome_audio"])).resolve()
        if not audio.is_relative_to(root):
            raise BadInput(f"template sidecar {side.name}: welcome_audio escapes the templates folder")
        if not audio.is_file():
            raise BadInput(f"template sidecar {side.name}: {meta['welcome_audio']} not found")
    return name, text, audio


def discover(templates_dir: Path) -> dict[str, TemplateSource]:
    """Every photo or video in `templates_dir` whose stem is a valid id, by id."""
    root = Path(templates_dir).resolve()
    found: dict[str, TemplateSource] = {}
    if not root.is_dir():
        raise NotFound(f"templates folder {templates_dir} does not exist")
    for path in sorted(root.iterdir()):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in PHOTO_SUFFIXES + VIDEO_SUFFIXES:
            continue
        if not _ID.fullmatch(path.stem):
            log.warning("skipping template %s: its name is not a valid id", path.name)
            continue
        if path.stem in found:
            log.warning("skipping template %s: id %r is taken", path.name, path.stem)
            continue
        try:
            name, text, audio = _sidecar(path, root)
        except BadInput as exc:
            log.error("skipping template %s: %s", path.name, exc)  # the others carry on
            continue
        kind = "photo" if suffix in PHOTO_SUFFIXES else "video"
        found[path.stem] = TemplateSource(path.stem, name, kind, path, text, audio)
    return found


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def load_frames(source: TemplateSource, max_frames: int = 250) -> np.ndarray:
    """[N, H, W, 3] uint8 BGR frames of the template (even width and height; encoders need it)."""
    if source.kind == "photo":
        img = cv2.imread(str(source.path), cv2.IMREAD_COLOR)
        if img is None:
            raise UnsupportedMedia(f"cannot read image {source.path.name}")
        return np.ascontiguousarray(_even(img))[None]
    frames = []
    try:
        with av.open(str(source.path)) as container:
            for frame in container.decode(video=0):
                frames.append(np.ascontiguousarray(_even(frame.to_ndarray(format="bgr24"))))
                if len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError) as exc:
        raise UnsupportedMedia(f"cannot decode video {source.path.name}: {exc}") from None
    if not frames:
        raise UnsupportedMedia(f"video {source.path.name} has no frames")
    return np.stack(frames)
