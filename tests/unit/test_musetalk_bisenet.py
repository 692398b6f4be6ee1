"""Face parsing for blend masks: the official checkpoint's layout and MuseTalk's "jaw" rule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamer.avatar.prepared import PreparedTemplate
from streamer.config import Settings
from streamer.errors import ModelError
from streamer.render.musetalk import MuseTalkRenderer
from streamer.render.musetalk.bisenet import (
    LOWER_LIP,
    NOSE,
    SKIN,
    UPPER_LIP,
    BiSeNet,
    blend_mask,
    jaw_region,
    load_bisenet,
)
from tests.support.tiny_musetalk import build_tiny_models


def test_the_network_has_the_official_checkpoint_layout(tmp_path: Path) -> None:
    state = BiSeNet().state_dict()
    for key in (
        "cp.resnet.layer1.0.conv1.weight",
        "cp.resnet.layer2.0.downsample.1.running_var",
        "cp.arm16.conv.conv.weight",
        "cp.arm32.bn_atten.bias",
        "cp.conv_avg.bn.weight",
        "ffm.convblk.conv.weight",
        "ffm.conv2.weight",
        "conv_out.conv.conv.weight",
        "conv_out.conv_out.weight",
        "conv_out16.conv_out.weight",
    ):
        assert key in state
    assert state["conv_out.conv_out.weight"].shape == (19, 256, 1, 1)
    # Old checkpoints without BatchNorm step counters still load.
    path = tmp_path / "79999_iter.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)
    net = load_bisenet(path)
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 19, 64, 64)
    state["ffm.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"wrong shapes: ffm\.conv1\.weight"):
        load_bisenet(path)


def _face_labels() -> np.ndarray:
    labels = np.zeros((512, 512), np.uint8)
    cv2.ellipse(labels, (256, 250), (150, 200), 0, 0, 360, SKIN, -1)
    cv2.rectangle(labels, (236, 200), (276, 300), NOSE, -1)
    cv2.ellipse(labels, (256, 350), (50, 14), 0, 0, 180, LOWER_LIP, -1)
    cv2.ellipse(labels, (256, 340), (50, 10), 0, 180, 360, UPPER_LIP, -1)
    return labels


def test_the_jaw_region_keeps_skin_and_lips_but_not_the_nose() -> None:
    labels = _face_labels()
    region = jaw_region(labels)
    assert set(np.unique(region)) <= {0, 255}
    assert np.all(region[np.isin(labels, (UPPER_LIP, LOWER_LIP))] == 255)
    assert np.all(region[labels == NOSE] == 0)
    assert region[400, 256] == 255 and region[5, 5] == 0
    # The cone kernel grows the skin upwards at the chin's centre, the cheeks are narrowed.
    assert region[453, 256] == 255 and labels[453, 256] == 0


def test_the_blend_mask_stays_below_the_middle_and_inside_the_face() -> None:
    region = np.full((512, 512), 255, np.uint8)
    face, blend = np.array([100, 100, 300, 300]), np.array([50, 50, 350, 350])
    mask = blend_mask(region, face, blend)
    assert mask.shape == (256, 256) and mask.dtype == np.uint8
    scale = 256 / 300
    k = int(0.1 * 300 // 2 * 2) + 1
    top = int(150 * scale)
    assert np.all(mask[: int((150 - k) * scale)] == 0)  # above the middle (less the blur)
    assert mask[int(200 * scale), 128] == 255  # the lower face (box rows 150–250 here)
    assert np.all(mask[:, : int((50 - k) * scale)] == 0)  # left of the face box
    assert mask[top - 20].max() < mask[top + 20].max()


def test_the_renderer_makes_parsed_blend_masks(tmp_path: Path) -> None:
    models = build_tiny_models(tmp_path / "models", face_parse=True)
    renderer = MuseTalkRenderer(models, "cpu", Settings(batch_size=4))
    assert renderer.cache_key()["face_parse"] != "none"
    frames = np.random.default_rng(0).integers(0, 256, (2, 300, 300, 3), dtype=np.uint8)
    boxes = np.array([[60, 50, 240, 250]] * 2, dtype=np.int32)
    blend = np.array([[15, 15, 285, 285]] * 2, dtype=np.int32)
    template = PreparedTemplate(
        id="t",
        name="t",
        kind="video",
        frames=frames,
        face_boxes=boxes,
        mouth=np.zeros((2, 2), np.float32),
        blend_boxes=blend,
        blend_masks=np.zeros((2, 256, 256), np.uint8),
        renderer="musetalk",
        welcome=None,
    )
    prepared = renderer.prepare(template)
    assert prepared.extras["latents"].shape == (2, 8, 32, 32)
    masks = prepared.blend_masks
    assert masks is not None and masks.shape == (2, 256, 256) and masks.dtype == np.uint8
    assert np.all(masks[:, :60] == 0)  # nothing above the middle of the blend box, less the blur
    assert prepared.applied_to(template).blend_masks is masks


def test_parsed_masks_at_each_frame_edge_use_the_padded_square(tmp_path: Path) -> None:
    """BiSeNet sees the padded square (black outside the frame, face centred), the boundary is
    the square's middle, and the cheeks are 90 px wide (of 512), as in official v1.5."""
    from streamer.avatar.masks import blend_boxes, padded_crop
    from streamer.render.musetalk.bisenet import CHEEK_WIDTH, PARSE_SIZE, FaceParser

    assert CHEEK_WIDTH == 90
    path = tmp_path / "79999_iter.pth"
    torch.save(BiSeNet().state_dict(), path)
    parser = FaceParser(path, torch.device("cpu"))
    frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    faces = np.array([[0, 60, 100, 170], [220, 60, 320, 170], [110, 0, 210, 110], [110, 130, 210, 240]], np.int32)
    blend = blend_boxes(faces)
    masks = parser.masks(np.stack([frame] * 4), faces, blend)
    for face, box, mask in zip(faces, blend, masks, strict=True):
        crop = cv2.resize(padded_crop(frame, box), (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR)
        expected = blend_mask(jaw_region(parser.labels(crop[None])[0]), face, box)
        assert np.array_equal(mask, expected)
        side = int(box[2] - box[0])
        k = int(0.1 * side // 2 * 2) + 1
        assert mask[: int((side // 2 - k) * 256 / side)].max() == 0  # above the middle, less blur
