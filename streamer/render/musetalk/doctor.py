"""`python run.py check-models DIR`: what a MuseTalk models folder holds, file by file, and
whether MuseTalk will start with it.

Each file of the official layout is found or missing; a found weights file is loaded strictly
into its network, as the renderer loads it (unreadable: truncated, corrupt or not a
checkpoint; wrong shape: its keys or shapes do not match its config). Sizes and SHA-256 are
given for comparison with the published files. Exit status: 0 when MuseTalk will start
(degraded or not), 1 when a file it needs is missing, 3 when one is unreadable or of the wrong
shape (1 and 3 together: 3).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from streamer.avatar.face import has_fan
from streamer.avatar.hashing import file_sha256
from streamer.errors import ModelError
from streamer.render.musetalk.layout import DWPOSE_FILE, FACE_PARSE_FILE, Layout, read_config, weights_in
from streamer.settings_slices import RenderSettings

FOUND, MISSING, UNREADABLE, WRONG_SHAPE = "found", "missing", "unreadable", "wrong shape"
EXIT_READY, EXIT_MISSING, EXIT_BROKEN = 0, 1, 3
_WRONG = ("does not match its config", "holds no whisper encoder weights", "not an RTMPose")
_CONFIG = ("cannot read model config", "cannot build the", "cannot read the whisper configs")


@dataclass(frozen=True)
class FileCheck:
    path: str
    """Relative to the models folder."""
    part: str
    required: bool
    status: str
    """found, missing, unreadable or wrong shape."""
    size: int | None = None
    sha256: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Report:
    models: str
    files: list[FileCheck]
    notes: list[str]
    """Optional parts that are absent or unused, and what that means."""
    cuda_devices: list[str]
    fp16: bool
    """A CUDA device that computes in fp16 (capability ≥ 5.3) is present."""
    will_start: bool
    degraded: bool
    verdict: str
    exit_code: int
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    path: Path
    part: str
    required: bool
    load: Callable[[], object] | None = None
    """Loads the file strictly into its network; None: presence (and JSON) only."""


def _layout(root: Path) -> Layout:
    """The layout's paths, whether or not the files are there (`find_layout` refuses then)."""
    unet, vae, whisper = root / "musetalkV15", root / "sd-vae", root / "whisper"
    return Layout(
        root=root,
        version="v15",
        unet_weights=unet / "unet.pth",
        unet_config=unet / "musetalk.json",
        vae_config=vae / "config.json",
        vae_weights=weights_in(vae) or vae / "diffusion_pytorch_model.bin",
        whisper_config=whisper / "config.json",
        whisper_weights=weights_in(whisper) or whisper / "pytorch_model.bin",
        whisper_dir=whisper,
        face_parse=root / "face-parse-bisent" / FACE_PARSE_FILE,
        dwpose=root / "dwpose" / DWPOSE_FILE,
    )


def _entries(layout: Layout, settings: RenderSettings) -> list[_Entry]:
    from streamer.render.musetalk.bisenet import load_bisenet
    from streamer.render.musetalk.dwpose import load_dwpose
    from streamer.render.musetalk.models import load_unet, load_vae, load_whisper

    faces = settings.musetalk_faces
    dwpose_needed = faces == "dwpose" or (faces == "auto" and not has_fan(layout.root))
    root = layout.root
    dwpose, face_parse = root / "dwpose" / DWPOSE_FILE, root / "face-parse-bisent" / FACE_PARSE_FILE
    return [
        _Entry(layout.unet_config, "v1.5 UNet config", True),
        _Entry(layout.unet_weights, "v1.5 UNet", True, lambda: load_unet(layout)),
        _Entry(layout.vae_config, "VAE config", True),
        _Entry(layout.vae_weights, "VAE (sd-vae-ft-mse)", True, lambda: load_vae(layout)),
        _Entry(layout.whisper_config, "whisper config", True),
        _Entry(layout.whisper_dir / "preprocessor_config.json", "whisper feature extractor", True),
        _Entry(layout.whisper_weights, "whisper-tiny encoder", True, lambda: load_whisper(layout)),
        _Entry(dwpose, "DWPose face landmarks", dwpose_needed, lambda: load_dwpose(dwpose)),
        _Entry(
            face_parse, "BiSeNet face parsing", settings.musetalk_mask == "bisenet", lambda: load_bisenet(face_parse)
        ),
        _Entry(root / "face-parse-bisent" / "resnet18-5c106cde.pth", "ResNet-18 (not read here)", False),
    ]


def _check(entry: _Entry, root: Path) -> FileCheck:
    relative = str(entry.path.relative_to(root))
    if not entry.path.is_file():
        return FileCheck(relative, entry.part, entry.required, MISSING)
    size, digest = entry.path.stat().st_size, file_sha256(entry.path)
    status, detail = FOUND, ""
    try:
        if entry.load is not None:
            entry.load()
        elif entry.path.suffix == ".json":
            read_config(entry.path)
    except ModelError as exc:
        detail = str(exc)
        if any(text in detail for text in _CONFIG):
            detail = "not checked against its config, which is missing or unreadable (see its line)"
        else:
            status = WRONG_SHAPE if any(text in detail for text in _WRONG) else UNREADABLE
    except Exception as exc:  # noqa: BLE001 - a library failing on a strange file: report it, go on
        status, detail = UNREADABLE, f"{type(exc).__name__}: {exc}"
    return FileCheck(relative, entry.part, entry.required, status, size, digest, detail)


def _notes(files: list[FileCheck], settings: RenderSettings, root: Path) -> tuple[list[str], bool]:
    """What absent or unused optional parts mean, and whether the result is degraded."""
    by_path = {f.path: f for f in files}
    notes, degraded = [], False
    dwpose = by_path[f"dwpose/{DWPOSE_FILE}"]
    if settings.musetalk_faces == "haar":
        degraded = True
        notes.append('musetalk_faces = "haar": crops framed by OpenCV boxes, not landmarks (degraded)')
    elif dwpose.status == MISSING and has_fan(root) and settings.musetalk_faces != "dwpose":
        notes.append("no DWPose: face-alignment's FAN frames the crops (not the official landmarks)")
    elif dwpose.status == MISSING:
        notes.append(
            f'no DWPose: preparing templates is refused; install dwpose/{DWPOSE_FILE}, or set musetalk_faces = "haar" '
            "(OpenCV boxes, degraded)"
        )
    parse = by_path[f"face-parse-bisent/{FACE_PARSE_FILE}"]
    if settings.musetalk_mask == "geometric":
        degraded = True
        notes.append('musetalk_mask = "geometric": a fixed jaw mask instead of face parsing (degraded)')
    elif parse.status == MISSING:
        notes.append(
            f"no BiSeNet: MuseTalk refuses to start; install face-parse-bisent/{FACE_PARSE_FILE}, "
            'or set musetalk_mask = "geometric" (degraded)'
        )
    if by_path["face-parse-bisent/resnet18-5c106cde.pth"].status == MISSING:
        notes.append(
            "no face-parse-bisent/resnet18-5c106cde.pth: nothing lost, it is never read (its weights are inside "
            f"{FACE_PARSE_FILE}; the official code loads it only to initialise BiSeNet)"
        )
    if (root / "musetalk" / "pytorch_model.bin").is_file():
        notes.append("musetalk/pytorch_model.bin (v1.0) is not read: only v1.5 is supported")
    return notes, degraded


def _devices() -> tuple[list[str], bool]:
    if not torch.cuda.is_available():
        return [], False
    count = torch.cuda.device_count()
    names = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(count)]
    return names, count > 0 and all(torch.cuda.get_device_capability(i) >= (5, 3) for i in range(count))


def check_models(models: Path, settings: RenderSettings) -> Report:
    root = Path(models).expanduser()
    files = [_check(entry, root) for entry in _entries(_layout(root), settings)]
    notes, degraded = _notes(files, settings, root)
    cuda, fp16 = _devices()
    if not cuda:
        notes.append("no CUDA device: MuseTalk would run on the CPU, seconds per frame (for tests, not use)")
    needed = [f for f in files if f.required and f.status != FOUND]
    broken = [f for f in needed if f.status in (UNREADABLE, WRONG_SHAPE)]
    code = EXIT_BROKEN if broken else EXIT_MISSING if needed else EXIT_READY
    if needed:
        verdict = "MuseTalk will not start: " + "; ".join(f"{f.path} {f.status}" for f in needed)
    else:
        verdict = "MuseTalk will start" + (", degraded (see the notes)" if degraded else "")
    chosen = {"musetalk_faces": settings.musetalk_faces, "musetalk_mask": settings.musetalk_mask}
    return Report(str(root), files, notes, cuda, fp16, not needed, degraded and not needed, verdict, code, chosen)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} B"


def format_report(report: Report) -> str:
    lines = [f"MuseTalk v1.5 models in {report.models}"]
    for f in report.files:
        need = "required" if f.required else "optional"
        lines.append(f"  {f.status:<11} {f.path:<45} {_size(f.size):>9}  {need}  {f.part}")
        if f.sha256:
            lines.append(f"  {'':<11} sha256 {f.sha256}")
        if f.detail:
            lines.append(f"  {'':<11} {f.detail}")
    lines += [f"  note: {note}" for note in report.notes]
    devices = ", ".join(report.cuda_devices) or "none"
    lines.append(f"CUDA devices: {devices}; fp16: {'yes' if report.fp16 else 'no'}")
    lines.append(report.verdict)
    return "\n".join(lines)


def report_json(report: Report) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2)
