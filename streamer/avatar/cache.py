"""The on-disk cache of one prepared template: `<folder>/<id>/manifest.json` + one raw `.npy`
file per array, where the folder is `cache/<renderer>/` (see `render.prepare.renderer_cache`).

The manifest records what shaped the arrays (the source file's hash and a key of renderer and
settings). A cache that is missing, stale or corrupt is reported as None, never trusted.
The template's frames are cached too (`frames.npy`). Arrays are memory-mapped read-only, never
copied on load: the web process and every worker share one copy of the pages (the OS page
cache) instead of each decoding the source (a 250-frame 1080p loop is 1.5 GB).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from streamer.avatar.prepared import PreparedTemplate, WelcomeClip

log = logging.getLogger(__name__)

FORMAT = 2
"""2: the template records what gave its face boxes (`faces`, `degraded`)."""
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
_EXTRA = "extra."
_WELCOME = ("positions", "crops", "audio")


def _arrays(t: PreparedTemplate) -> dict[str, np.ndarray]:
    out = {
        "frames": t.frames,
        "face_boxes": t.face_boxes,
        "mouth": t.mouth,
        "blend_boxes": t.blend_boxes,
        "blend_masks": t.blend_masks,
    }
    if t.welcome is not None:
        out |= {f"welcome.{k}": getattr(t.welcome, k) for k in _WELCOME}
    out |= {_EXTRA + k: v for k, v in t.extras.items()}
    return out


def read_manifest(cache_dir: Path, template_id: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(cache_dir) / template_id / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_matches(manifest: dict[str, Any] | None, source_sha256: str, key: dict[str, str]) -> str | None:
    """Why the manifest does not describe a cache for this source and key; None when it does."""
    if manifest is None:
        return "no readable manifest"
    if manifest.get("format") != FORMAT:
        return f"format {manifest.get('format')!r} is not {FORMAT}"
    if manifest.get("source_sha256") != source_sha256:
        return "the template file changed"
    if manifest.get("key") != key:
        return "the renderer or settings changed"
    return None


def save(template: PreparedTemplate, cache_dir: Path, source_sha256: str, key: dict[str, str]) -> Path:
    """Write the cache of `template` atomically (a temporary folder renamed into place)."""
    arrays = _arrays(template)
    manifest = {
        "format": FORMAT,
        "source_sha256": source_sha256,
        "key": key,
        "template": {
            "id": template.id,
            "name": template.name,
            "kind": template.kind,
            "renderer": template.renderer,
            "welcome_text": template.welcome_text,
            "frames": template.frame_count,
            "width": template.width,
            "height": template.height,
            "faces": template.faces,
            "degraded": template.degraded,
        },
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
    }
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / template.id
    tmp = Path(tempfile.mkdtemp(prefix=f".{template.id}.", dir=root))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is not secret
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        old = root / f".{template.id}.old.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            final.rename(old)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process saved it meanwhile
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load(
    cache_dir: Path, template_id: str, frames: np.ndarray | None, source_sha256: str, key: dict[str, str]
) -> PreparedTemplate | None:
    """The cached template, or None (logged once) when missing, stale or corrupt.

    `frames`: already decoded frames to use (they must have the cached shape); None maps the
    cached ones.
    """
    folder = Path(cache_dir) / template_id
    if not (folder / MANIFEST).exists():
        log.info("no cache for template %s", template_id)
        return None
    manifest = read_manifest(cache_dir, template_id)
    why = manifest_matches(manifest, source_sha256, key)
    if why is None and manifest is not None:  # no reason given means a manifest was read
        try:
            return _build(manifest, folder, frames)
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            why = f"corrupt ({type(exc).__name__}: {exc})"
    log.warning("cache of template %s not used: %s", template_id, why)
    return None


def _map(folder: Path, name: str, spec: dict[str, Any]) -> np.ndarray:
    """One array, memory-mapped read-only, checked against the manifest."""
    if "/" in name or name.startswith("."):
        raise ValueError(f"bad array name {name!r}")
    a: np.ndarray = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
    if list(a.shape) != spec["shape"] or str(a.dtype) != spec["dtype"]:
        raise ValueError(f"array {name} is {a.shape} {a.dtype}, manifest says {spec}")
    return a


def _build(manifest: dict[str, Any], folder: Path, frames: np.ndarray | None) -> PreparedTemplate:
    meta = manifest["template"]
    arrays = {name: _map(folder, name, spec) for name, spec in manifest["arrays"].items()}
    if frames is None:
        frames = arrays["frames"]
    if list(frames.shape[:3]) != [meta["frames"], meta["height"], meta["width"]]:
        raise ValueError(f"frames {frames.shape[:3]} differ from the cached {meta}")
    n = int(meta["frames"])
    for name in ("frames", "face_boxes", "mouth", "blend_boxes", "blend_masks"):
        if arrays[name].shape[0] != n:
            raise ValueError(f"array {name} has {arrays[name].shape[0]} rows for {n} frames")
    welcome = None
    if "welcome.positions" in arrays:
        welcome = WelcomeClip(*(arrays[f"welcome.{k}"] for k in _WELCOME))
    return PreparedTemplate(
        id=meta["id"],
        name=meta["name"],
        kind=meta["kind"],
        frames=frames,
        face_boxes=arrays["face_boxes"],
        mouth=arrays["mouth"],
        blend_boxes=arrays["blend_boxes"],
        blend_masks=arrays["blend_masks"],
        renderer=meta["renderer"],
        welcome=welcome,
        welcome_text=meta["welcome_text"],
        extras={k[len(_EXTRA) :]: v for k, v in arrays.items() if k.startswith(_EXTRA)},
        faces=str(meta.get("faces", "haar")),
        degraded=bool(meta.get("degraded", False)),
    )
