"""DWPose: the port's state dict against the published RTMPose-l wholebody configuration, a
strict load of tiny weights in the official layout, SimCC decoding and the official box rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.avatar.face import EXTRA_MARGIN, detect_faces, landmark_box
from streamer.errors import ModelError
from streamer.render.musetalk.dwpose import OFFICIAL, DWPose, config_of, load_dwpose
from streamer.render.musetalk.landmarks import FACE_SCORE, FaceLandmarks, Warp, decode
from streamer.render.musetalk.tiny import write_tiny_dwpose
from tests.fixtures.rtmpose_manifest import CONFIG, manifest

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


def test_simcc_maxima_map_back_to_frame_pixels() -> None:
    # A 640×360 frame: the 1.25-padded box is widened to 288:384 → 800 × 1066.67 frame px.
    warp = Warp.whole_frame(640, 360)
    assert warp.scale == pytest.approx(288 / 800)
    simcc_x, simcc_y = np.zeros((133, 576), np.float32), np.zeros((133, 768), np.float32)
    simcc_x[30, 288], simcc_y[30, 384] = 0.9, 0.7  # the input's centre
    simcc_x[31, 0], simcc_y[31, 100] = 0.4, 0.8
    points, scores = decode(simcc_x, simcc_y)
    assert points[30].tolist() == [144.0, 192.0] and scores[30] == pytest.approx(0.7)
    assert scores[31] == pytest.approx(0.4)
    frame = warp.to_frame(points[[30, 31]])
    assert frame[0] == pytest.approx([320, 180])  # centre ↔ centre
    assert frame[1] == pytest.approx([320 - 400, 180 + (50 - 192) / warp.scale])
    # The warp matrix is the same mapping as `to_frame`, inverted.
    m = warp.matrix()
    assert m @ np.array([*frame[1], 1]) == pytest.approx(points[31], abs=1e-3)


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
