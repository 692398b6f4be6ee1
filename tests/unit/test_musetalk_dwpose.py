"""DWPose: the port's state dict against the published RTMPose-l wholebody configuration, a
strict load of tiny weights in the official layout, SimCC decoding and the official box rule."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamer.avatar.face import EXTRA_MARGIN, detect_faces, landmark_box
from streamer.errors import ModelError
from streamer.render.musetalk.dwpose import OFFICIAL, DWPose, config_of, load_dwpose
from streamer.render.musetalk.landmarks import FACE_SCORE, FaceLandmarks, Warp, decode
from tests.fixtures.rtmpose_manifest import CONFIG, manifest
from tests.support.tiny_musetalk import write_tiny_dwpose

FIXTURE = Path(__file__).parent.parent / "fixtures" / "rtmpose_l_wholebody.json"


def test_the_port_has_the_published_rtmpose_l_state_dict() -> None:
    expected = json.loads(FIXTURE.read_text())
    assert expected == manifest(CONFIG)  # the committed fixture is the description's output
    got = {k: list(v.shape) for k, v in DWPose().state_dict().items()}
    assert sorted(set(expected) - set(got)) == [] and sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert config_of(DWPose().state_dict()) == OFFICIAL


def test_tiny_weights_load_strictly_and_bad_files_are_refused(tmp_path: Path) -> None:
    path = write_tiny_dwpose(tmp_path / "dwpose" / "dw-ll_ucoco_384.pth")
    net = load_dwpose(path)
    x, y = net(torch.zeros(1, 3, 384, 288))
    assert x.shape == (1, 133, 576) and y.shape == (1, 133, 768)
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint["state_dict"]["head.gau.beta"]
    torch.save(checkpoint, path)
    with pytest.raises(ModelError, match=r"dw-ll_ucoco_384\.pth.*missing keys: head\.gau\.beta"):
        load_dwpose(path)
    path.write_bytes(b"truncated")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_dwpose(path)


# mmpose 1.x, written out (bbox_xyxy2cs, TopdownAffine._fix_aspect_ratio, get_warp_matrix,
# get_simcc_maximum + SimCCLabel.decode, TopdownPoseEstimator.add_pred_to_datasample), to hold
# the port to: not the port's own code.
def mmpose_center_scale(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    bbox = np.array([[0, 0, width, height]], dtype=np.float32)  # inference_topdown, no bboxes
    x1, y1, x2, y2 = np.hsplit(bbox, [1, 2, 3])
    center = np.hstack([x1 + x2, y1 + y2]) * 0.5
    scale = np.hstack([x2 - x1, y2 - y1]) * 1.25
    aspect_ratio = 288 / 384
    w, h = np.hsplit(scale, [1])
    scale = np.where(w > h * aspect_ratio, np.hstack([w, w / aspect_ratio]), np.hstack([h * aspect_ratio, h]))
    return center[0], scale[0]


def mmpose_warp_matrix(center, scale, rot, output_size, shift=(0.0, 0.0)) -> np.ndarray:
    shift = np.array(shift)
    src_w = scale[0]
    dst_w, dst_h = output_size
    rot_rad = np.deg2rad(rot)
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_dir = np.array([[cs, -sn], [sn, cs]]) @ np.array([src_w * -0.5, 0.0])
    dst_dir = np.array([dst_w * -0.5, 0.0])
    src = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center + scale * shift
    src[1, :] = center + src_dir + scale * shift
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir

    def third_point(a, b):
        direction = a - b
        return b + np.r_[-direction[1], direction[0]]

    src[2, :] = third_point(src[0, :], src[1, :])
    dst[2, :] = third_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def mmpose_decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x_locs, y_locs = np.argmax(simcc_x, axis=1), np.argmax(simcc_y, axis=1)
    locs = np.stack((x_locs, y_locs), axis=-1).astype(np.float32)
    max_val_x, max_val_y = np.amax(simcc_x, axis=1), np.amax(simcc_y, axis=1)
    mask = max_val_x > max_val_y
    max_val_x[mask] = max_val_y[mask]
    vals = max_val_x
    locs[vals <= 0.0] = -1
    locs /= 2.0  # simcc_split_ratio
    return locs, vals


def mmpose_to_frame(keypoints: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out = keypoints[None].copy()
    out[..., :2] = out[..., :2] / (288, 384) * scale + center - 0.5 * scale
    return out[0]


SIZES = [(640, 360), (1280, 720), (512, 512), (1920, 1080), (720, 1280), (333, 517)]


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_the_warp_is_mmpose_s_to_the_bit(width: int, height: int) -> None:
    warp = Warp.whole_frame(width, height)
    center, scale = mmpose_center_scale(width, height)
    assert warp.scale.dtype == np.float32 and np.array_equal(warp.scale, scale)
    assert np.array_equal(warp.center, center)
    assert np.array_equal(warp.matrix(), mmpose_warp_matrix(center, scale, 0.0, (288, 384)))
    # Every SimCC bin maps to the frame pixel mmpose gives (after MuseTalk's astype(int32)).
    bins = np.stack(np.meshgrid(np.arange(-1, 576), np.arange(-1, 768)), -1).reshape(-1, 2)
    points = bins.astype(np.float32) / 2
    expected = mmpose_to_frame(points, center, scale)
    got = warp.to_frame(points)
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert np.array_equal(got.astype(np.int32), expected.astype(np.int32))


def test_float32_box_scale_matters_at_640x360() -> None:
    """A float64 scale (the port's old arithmetic) puts some y bins one pixel lower."""
    warp = Warp.whole_frame(640, 360)
    y = np.arange(768, dtype=np.float32) / 2
    points = np.stack([np.full_like(y, 144), y], -1)
    old = (points - [144, 192]) / (288 / 800) + [320, 180]
    differ = np.mean(old[:, 1].astype(np.int32) != warp.to_frame(points)[:, 1].astype(np.int32))
    assert 0.01 < differ < 0.1


def test_simcc_decoding_is_mmpose_s() -> None:
    rng = np.random.default_rng(3)
    simcc_x = rng.normal(size=(133, 576)).astype(np.float32)
    simcc_y = rng.normal(size=(133, 768)).astype(np.float32)
    simcc_x[[5, 40]] -= 10  # every logit ≤ 0: score ≤ 0, placed at bin -1
    simcc_y[60] -= 10
    points, scores = decode(simcc_x.copy(), simcc_y.copy())
    want_points, want_scores = mmpose_decode(simcc_x.copy(), simcc_y.copy())
    assert points.dtype == np.float32 and np.array_equal(points, want_points)
    assert np.array_equal(scores, want_scores)
    assert points[[5, 40, 60]].tolist() == [[-0.5, -0.5]] * 3
    # Off the frame: the official box rule drops such a face (its detector's box is used there).
    face = Warp.whole_frame(640, 360).to_frame(points[23:91])
    assert face[40 - 23, 0] < 0 and landmark_box(face) is None


def _face(x0: float, y0: float, size: float) -> np.ndarray:
    """68 synthetic points: jaw 0–16 on a U, nose bridge 27–30, the rest inside."""
    pts = np.zeros((68, 2))
    t = np.linspace(0, np.pi, 17)
    pts[:17] = np.stack([x0 + size / 2 * (1 - np.cos(t)), y0 + 0.4 * size + 0.6 * size * np.sin(t)], 1)
    pts[17:] = [x0 + size / 2, y0 + 0.5 * size]
    pts[27:31, 1] = y0 + np.array([0.30, 0.40, 0.50, 0.60]) * size
    pts[48:68] = [x0 + size / 2, y0 + 0.8 * size]
    return pts


def test_the_official_box_rule_on_synthetic_landmarks() -> None:
    pts = _face(100.7, 80.2, 120.0)
    # int32 first; x from the points' extent, y2 the chin, y1 the chin mirrored about point 29.
    p = pts.astype(np.int32)
    chin, nose = p[:, 1].max(), p[29, 1]
    assert landmark_box(pts).tolist() == [p[:, 0].min(), nose - (chin - nose), p[:, 0].max(), chin]
    assert landmark_box(_face(-5, 80, 120)) is None  # x1 < 0: the official code drops it
    flat = pts.copy()
    flat[:, 1] = 50
    assert landmark_box(flat) is None  # an empty box


def test_landmark_boxes_get_the_v15_margin_and_stay_in_the_frame() -> None:
    frames = np.zeros((1, 240, 320, 3), np.uint8)
    pts = _face(100, 80, 120)
    track = detect_faces(frames, "t", lambda frame: pts, source="dwpose")
    x1, y1, x2, y2 = landmark_box(pts)
    assert track.boxes[0].tolist() == [x1, y1, x2, min(240, y2 + EXTRA_MARGIN)]
    assert track.source == "dwpose" and not track.degraded
    low = _face(100, 130, 120)  # chin at 250 > 240: the margin is cut at the frame's edge
    assert detect_faces(frames, "t", lambda frame: low).boxes[0, 3] == 240


def test_random_weights_find_no_face(tmp_path: Path) -> None:
    """The score threshold stands in for S3FD's face presence: random weights score low."""
    path = write_tiny_dwpose(tmp_path / "dw.pth")
    landmarks = FaceLandmarks(path, torch.device("cpu"))
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    points, scores = landmarks.points(frame)
    assert points.shape == (68, 2) and scores.shape == (68,)
    assert (landmarks(frame) is None) == (float(np.median(scores)) < FACE_SCORE)


def test_flip_test_swaps_left_and_right_keypoints(tmp_path: Path) -> None:
    from streamer.render.musetalk.landmarks import FLIP

    assert sorted(FLIP) == list(range(133)) and [FLIP[i] for i in FLIP] == list(range(133))
    assert FLIP[23] == 39 and FLIP[23 + 36] == 23 + 45 and FLIP[23 + 30] == 23 + 30  # jaw, eyes, nose
    assert FLIP[5] == 6 and FLIP[91] == 112  # shoulders, hand roots
    landmarks = FaceLandmarks(write_tiny_dwpose(tmp_path / "dw.pth"), torch.device("cpu"))
    image = np.random.default_rng(4).integers(0, 256, (384, 288, 3), dtype=np.uint8)
    x, y = landmarks.simcc(image)
    mx, my = landmarks.simcc(np.ascontiguousarray(image[:, ::-1]))
    # Flip-tested logits of the mirrored image are the mirror of the image's.
    np.testing.assert_allclose(mx[FLIP][:, ::-1], x, atol=1e-4)
    np.testing.assert_allclose(my[FLIP], y, atol=1e-4)
    # As mmpose's flip test: one call per image (not a batch of two), flip_vectors, (a + b) * 0.5.
    mean, std = np.array([123.675, 116.28, 103.53], np.float32), np.array([58.395, 57.12, 57.375], np.float32)
    rgb = (image[..., ::-1].astype(np.float32) - mean) / std
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        px, py = landmarks.net(tensor)
        fx, fy = landmarks.net(tensor.flip(-1))
    assert np.array_equal(x, ((px + fx[:, FLIP].flip(-1)) * 0.5)[0].numpy())
    assert np.array_equal(y, ((py + fy[:, FLIP]) * 0.5)[0].numpy())
