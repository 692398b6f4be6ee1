"""Torch checkpoints read as published, without running pickled code: an mmengine-shaped DWPose
file (numpy arrays, objects of a class that cannot be imported, extra entries) loads strictly;
a pickled call is never made; TorchScript archives and state-setting tricks are refused."""

from __future__ import annotations

import codecs
import importlib.util
import json
import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.errors import ModelError
from streamer.render.musetalk.checkpoint import Inert, read_checkpoint
from streamer.render.musetalk.dwpose import OFFICIAL, config_of, load_dwpose
from streamer.render.musetalk.layout import read_state_dict

FIXTURE = Path(__file__).parent.parent / "fixtures" / "rtmpose_l_wholebody.json"
MMENGINE = "mmengine.logging.history_buffer"


class HistoryBuffer:
    """Stands for mmengine's class; pickled under mmengine's module name, which is not installed."""

    def __init__(self, values: list[float]) -> None:
        self.max_length = 1_000_000
        self._log_history = np.array(values)
        self._count_history = np.ones(len(values))


HistoryBuffer.__module__ = MMENGINE


def _official_state() -> OrderedDict[str, torch.Tensor]:
    """The real file's 470 names and shapes; each tensor is one number broadcast to its shape
    (a 0-stride view: the file stays small, the strict load sees the real shapes)."""
    state = OrderedDict()
    for i, (key, shape) in enumerate(json.loads(FIXTURE.read_text()).items()):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(i, dtype=torch.int64)
        else:
            state[key] = torch.tensor(float(i)).expand(shape)
    return state


def _save_with_unimportable_class(obj: object, path: Path, **kwargs) -> Path:
    """torch.save while `mmengine.logging.history_buffer` exists, then it is gone again."""
    names = ["mmengine", "mmengine.logging", MMENGINE]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[MMENGINE].HistoryBuffer = HistoryBuffer  # type: ignore[attr-defined]
    try:
        torch.save(obj, path, **kwargs)
    finally:
        for name in names:
            del sys.modules[name]
    return path


def mmengine_checkpoint(path: Path, extra: dict | None = None, **kwargs) -> Path:
    """A file shaped like dw-ll_ucoco_384.pth: an mmengine checkpoint whose `state_dict` was
    swapped in by DWPose's transfer script (only `optimizer` dropped)."""
    checkpoint = {
        "meta": {
            "mmengine_version": "0.7.4",
            "mmpose_version": "1.0.0",
            "epoch": 270,
            "dataset_meta": {
                "dataset_name": "coco_wholebody",
                "num_keypoints": 133,
                "flip_indices": list(range(133)),
                "keypoint_colors": np.zeros((133, 3), np.uint8),
                "dataset_keypoint_weights": np.ones(133, np.float32),
                "sigmas": np.full(133, 0.025, np.float32),
            },
        },
        "state_dict": _official_state(),
        "message_hub": {
            "log_scalars": {"train/loss": HistoryBuffer([0.5, 0.4]), "train/lr": HistoryBuffer([4e-3])},
            "runtime_info": {"epoch": 270, "iter": 123_456},
            "resumed_keys": {"epoch": False},
        },
        "param_schedulers": [{"by_epoch": True, "last_step": 270}],
        **(extra or {}),
    }
    return _save_with_unimportable_class(checkpoint, path, **kwargs)


def test_an_mmengine_dwpose_checkpoint_loads_strictly(tmp_path: Path) -> None:
    path = mmengine_checkpoint(tmp_path / "dw-ll_ucoco_384.pth")
    assert importlib.util.find_spec("mmengine") is None  # the class really cannot be imported
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what the layout did before: refused
    net = load_dwpose(path)
    state = _official_state()
    assert config_of(state) == OFFICIAL and len(state) == 470
    loaded = net.state_dict()
    for key in ("backbone.stem.0.conv.weight", "head.gau.uv.weight", "head.cls_y.weight"):
        assert torch.equal(loaded[key], state[key].contiguous())
    everything = read_checkpoint(path)
    assert isinstance(everything["message_hub"]["log_scalars"]["train/loss"], Inert)
    assert isinstance(everything["meta"]["dataset_meta"]["sigmas"], Inert)  # numpy: not built
    assert everything["meta"]["dataset_meta"]["num_keypoints"] == 133
    assert "HistoryBuffer" in repr(everything["message_hub"]["log_scalars"]["train/lr"])


class Call:
    """An object whose unpickling calls `function(*args)`."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickled_call_is_never_made(tmp_path: Path, zip_format: bool) -> None:
    marker = tmp_path / "ran"
    evil = {
        "system": Call(os.system, f"touch {marker}"),
        "eval": Call(eval, f"open({str(marker)!r}, 'w').close()"),
        "exec": Call(exec, f"open({str(marker)!r}, 'w').close()"),
    }
    path = mmengine_checkpoint(tmp_path / "dw.pth", evil, _use_new_zipfile_serialization=zip_format)
    assert not marker.exists()
    state = read_state_dict(path, nested=True)
    assert len(state) == 470 and not marker.exists()
    loaded = read_checkpoint(path)
    assert all(isinstance(loaded[name], Inert) for name in evil) and not marker.exists()
    # The same calls through plain pickle do run: the test can fail.
    torch.save(evil, tmp_path / "plain.pth", _use_new_zipfile_serialization=zip_format)
    torch.load(tmp_path / "plain.pth", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ((torch.device, ("cpu",), {"type": "x"}), "setting the state of a device"),
        ((codecs.encode, ("payload", "rot13")), "_codecs.encode with 'rot13'"),
    ],
)
def test_state_setting_and_other_codecs_are_refused(tmp_path: Path, payload: tuple, reason: str) -> None:
    class Trick:
        def __reduce__(self):
            return payload

    path = tmp_path / "trick.pth"
    torch.save({"state_dict": {"w": torch.ones(1)}, "trick": Trick()}, path)
    with pytest.raises(ModelError, match=f"cannot read weights .*{reason}"):
        read_state_dict(path, nested=True)


def test_torchscript_archives_and_broken_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ModelError, match="TorchScript archive"):
        read_checkpoint(path)
    torch.save(OrderedDict(w=torch.ones(3)), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelError, match="cannot read weights"):
        read_state_dict(path)
    torch.save({"w": torch.ones(1), "note": np.ones(2)}, path)
    with pytest.raises(ModelError, match="not a plain state dict"):
        read_state_dict(path)
