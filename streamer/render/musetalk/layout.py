"""The official MuseTalk weights layout: find the files, load each model strictly, hash them.

Every model is built from its own config and loaded from a state dict (safetensors, or a torch
file read by `checkpoint.read_checkpoint`, which never runs pickled code), strictly: a missing
or unexpected key, a wrong shape or an unreadable file raises `ModelError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from streamer.errors import ModelError
from streamer.render.musetalk.checkpoint import read_checkpoint

VERSIONS = {"v15": "musetalkV15", "v10": "musetalk"}
UNET_FILES = {"v15": "unet.pth", "v10": "pytorch_model.bin"}
WEIGHT_NAMES = (
    "model.safetensors",
    "diffusion_pytorch_model.safetensors",
    "pytorch_model.bin",
    "diffusion_pytorch_model.bin",
)
FACE_PARSE_FILE = "79999_iter.pth"
DWPOSE_FILE = "dw-ll_ucoco_384.pth"
_SHOWN = 4  # key names quoted in an error message


@dataclass(frozen=True)
class Layout:
    """Paths of one MuseTalk install (a `models/` folder)."""

    root: Path
    version: str
    unet_weights: Path
    unet_config: Path
    vae_config: Path
    vae_weights: Path
    whisper_config: Path
    whisper_weights: Path
    whisper_dir: Path
    face_parse: Path | None
    """BiSeNet face-parsing weights; the renderer refuses without them unless told to use the
    geometric blend mask (`musetalk_mask = "geometric"`, labelled degraded)."""
    dwpose: Path | None = None
    """DWPose wholebody weights, whose face landmarks frame the crops (see render/musetalk/faces)."""


def weights_in(folder: Path) -> Path | None:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def find_layout(models: Path, version: str = "v15") -> Layout:
    """The layout under `models`, or ModelError naming every missing file."""
    if version == "v10":
        raise ModelError(
            "MuseTalk v1.0 is not supported (it needs the original whisper tiny.pt features); "
            'set musetalk_version = "v15" and use the musetalkV15/ weights'
        )
    if version not in VERSIONS:
        raise ModelError(f"unknown MuseTalk version {version!r} (supported: v15)")
    root = Path(models).expanduser()
    if not root.is_dir():
        raise ModelError(f"MuseTalk models folder {root} does not exist")
    unet_dir = root / VERSIONS[version]
    vae_dir, whisper_dir = root / "sd-vae", root / "whisper"
    required = {
        "unet_weights": unet_dir / UNET_FILES[version],
        "unet_config": unet_dir / "musetalk.json",
        "vae_config": vae_dir / "config.json",
        "whisper_config": whisper_dir / "config.json",
        "preprocessor": whisper_dir / "preprocessor_config.json",
    }
    missing = [str(p) for p in required.values() if not p.is_file()]
    vae_weights, whisper_weights = weights_in(vae_dir), weights_in(whisper_dir)
    if vae_weights is None:
        missing.append(f"{vae_dir}/diffusion_pytorch_model.(bin|safetensors)")
    if whisper_weights is None:
        missing.append(f"{whisper_dir}/pytorch_model.bin (or model.safetensors)")
    if missing:
        raise ModelError("MuseTalk weights incomplete, missing: " + ", ".join(missing))
    face_parse = root / "face-parse-bisent" / FACE_PARSE_FILE
    dwpose = root / "dwpose" / DWPOSE_FILE
    return Layout(
        root=root,
        version=version,
        unet_weights=required["unet_weights"],
        unet_config=required["unet_config"],
        vae_config=required["vae_config"],
        vae_weights=vae_weights,  # type: ignore[arg-type]
        whisper_config=required["whisper_config"],
        whisper_weights=whisper_weights,  # type: ignore[arg-type]
        whisper_dir=whisper_dir,
        face_parse=face_parse if face_parse.is_file() else None,
        dwpose=dwpose if dwpose.is_file() else None,
    )


def has_weights(models: Path | None, version: str = "v15") -> bool:
    """True when `models` holds a complete layout (nothing is loaded)."""
    if models is None:
        return False
    try:
        find_layout(models, version)
    except ModelError:
        return False
    return True


def read_config(path: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads(Path(path).read_text())
        return config
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read model config {path}: {exc}") from None


def read_state_dict(path: Path, nested: bool = False) -> dict[str, torch.Tensor]:
    """A plain tensor state dict from .safetensors or a torch file (never running pickled code).

    `nested`: the tensors may sit under a `state_dict` entry (mmengine/mmpose checkpoints; the
    `meta`, `message_hub` and other entries beside it are ignored).
    """
    path = Path(path)
    state: object
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - safetensors raises many kinds for a truncated file
            raise ModelError(f"cannot read weights {path} (truncated, corrupt or not a state dict): {exc}") from None
    else:
        state = read_checkpoint(path)
    if nested and isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a plain state dict of tensors")
    return dict(state)


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Load `state` into `module`, or raise ModelError listing what does not match."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            problems.append(f"{label}: {', '.join(items[:_SHOWN])}{more}")
    if problems:
        raise ModelError(f"{source} does not match its config; " + "; ".join(problems))
    module.load_state_dict(state, strict=True)
