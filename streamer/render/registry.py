"""Which renderer runs, on which devices; the only place that names the renderer classes."""

from __future__ import annotations

import importlib.util
import logging
import os

from streamer import resources
from streamer.errors import BadInput, ModelError
from streamer.render.base import Renderer
from streamer.settings_slices import RenderSettings

log = logging.getLogger(__name__)
MUSETALK_MODULES = ("torch", "diffusers", "transformers", "safetensors", "face_alignment")
"""What the `[musetalk]` extra installs; the base install (server + lite) has none of them."""


def musetalk_install() -> str:
    """The command that adds the MuseTalk extra to the Python running this."""
    return resources.install_command("musetalk")


def musetalk_missing() -> list[str]:
    return [name for name in MUSETALK_MODULES if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def renderer_name(settings: RenderSettings) -> str:
    """`musetalk` when asked for or when `auto` finds its weights, else the embedded `lite`."""
    missing = musetalk_missing() if settings.renderer in ("auto", "musetalk") else []
    if settings.renderer == "musetalk" and missing:
        raise ModelError(f"the musetalk renderer needs {', '.join(missing)}: run {musetalk_install()}")
    if settings.renderer != "auto":
        return settings.renderer
    if settings.devices and all(d.startswith("sim") for d in settings.devices):
        return "sim"
    if settings.models is not None and missing:
        log.warning("MuseTalk is not installed (run %s); using the embedded lite renderer", musetalk_install())
    elif settings.models is not None:
        from streamer.render.musetalk import has_weights

        if has_weights(settings.models):
            return "musetalk"
        log.warning("no MuseTalk weights under %s; using the embedded lite renderer", settings.models)
    return "lite"


def _cuda_count() -> int:
    """Number of CUDA devices, without creating a CUDA context in this process."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def devices(settings: RenderSettings) -> list[str]:
    """Render devices, one worker each: `cuda:0,cuda:1`, `cpu:2` (two CPU workers),
    `sim:0,sim:1` (simulated devices) or all GPUs."""
    if settings.devices:
        out: list[str] = []
        for spec in settings.devices:
            if spec.startswith("sim"):
                if not spec.partition(":")[2].isdigit():
                    raise BadInput(f"bad device {spec!r}: use sim:N, one per simulated device")
                out.append(spec)
            elif spec.startswith("cpu"):
                count = spec.partition(":")[2] or "1"
                if not count.isdigit() or int(count) < 1:
                    raise BadInput(f"bad device {spec!r}: use cpu or cpu:N")
                out += ["cpu"] * int(count)
            elif spec.startswith("cuda"):
                out.append(spec if ":" in spec else "cuda:0")
            else:
                raise BadInput(f"bad device {spec!r}: use cuda:N, cpu[:N] or sim:N")
        return out
    if renderer_name(settings) == "sim":
        return ["sim:0"]
    if renderer_name(settings) == "musetalk":
        cuda = _cuda_count()
        if cuda:
            return [f"cuda:{i}" for i in range(cuda)]
    return ["cpu"]


def create_renderer(settings: RenderSettings, device: str = "cpu") -> Renderer:
    name = renderer_name(settings)
    if name == "sim" or device.startswith("sim"):
        from streamer.render.sim import SimRenderer

        return SimRenderer(settings.sim_fixed_ms, settings.sim_per_frame_ms, settings.batch_size)
    if name == "musetalk":
        from streamer.render.musetalk import MuseTalkRenderer

        assert settings.models is not None
        return MuseTalkRenderer(settings.models, device, settings)
    from streamer.render.lite import LiteRenderer

    return LiteRenderer()
