"""Template discovery, ids, face boxes and blend masks on the shipped templates."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from streamer import resources
from streamer.avatar.face import detect_faces
from streamer.avatar.masks import blend_boxes, jaw_mask, padded_crop
from streamer.avatar.sources import check_id, discover, file_sha256, load_frames
from streamer.errors import BadInput
from streamer.units import CROP_SIZE

TEMPLATES = resources.TEMPLATES


@pytest.fixture(scope="module")
def sources():
    return discover(TEMPLATES)


@pytest.fixture(scope="module")
def tracks(sources):
    out = {}
    for tid, source in sources.items():
        frames = load_frames(source)
        out[tid] = (frames, detect_faces(frames, source.path.name))
    return out


def test_shipped_templates_are_discovered_with_sidecars(sources):
    assert set(sources) == {"astronaut", "astronaut_loop"}
    photo, video = sources["astronaut"], sources["astronaut_loop"]
    assert (photo.kind, video.kind) == ("photo", "video")
    for s in (photo, video):
        assert s.name and "digital human" in s.welcome_text
        assert s.welcome_audio == TEMPLATES / "welcome.wav"


def test_frames_are_bgr_and_even(sources):
    photo = load_frames(sources["astronaut"])
    assert photo.shape == (1, 512, 512, 3) and photo.dtype == np.uint8
    # The NASA photo's orange suit (bottom left) is red-dominant in BGR order.
    suit = photo[0, 480:500, 20:60].reshape(-1, 3).mean(axis=0)
    assert suit[2] > suit[0] + 40
    video = load_frames(sources["astronaut_loop"], max_frames=30)
    assert video.shape == (30, 512, 512, 3)


def test_odd_sized_photo_is_cropped_even(tmp_path, sources):
    import cv2

    cv2.imwrite(str(tmp_path / "odd.png"), load_frames(sources["astronaut"])[0][:301, :299])
    frames = load_frames(discover(tmp_path)["odd"])
    assert frames.shape[1:3] == (300, 298)


@pytest.mark.parametrize("bad", ["../x", "A", "x/y", "", ".x", "a" * 65, "x\x00"])
def test_bad_ids_are_refused(bad):
    with pytest.raises(BadInput):
        check_id(bad)


def test_good_ids_pass():
    assert check_id("astronaut_loop") == "astronaut_loop"
    assert check_id("a-1") == "a-1"


def test_sidecar_escaping_templates_dir_is_refused_and_the_others_carry_on(tmp_path, caplog):
    shutil.copy(TEMPLATES / "astronaut.png", tmp_path / "face.png")
    shutil.copy(TEMPLATES / "astronaut.png", tmp_path / "other.png")
    (tmp_path / "face.json").write_text(json.dumps({"welcome_audio": "../outside.wav"}))
    (tmp_path.parent / "outside.wav").write_bytes(b"RIFF")
    assert list(discover(tmp_path)) == ["other"]
    assert "escapes" in caplog.text


def test_template_without_sidecar_gets_defaults(tmp_path):
    shutil.copy(TEMPLATES / "astronaut.png", tmp_path / "plain.png")
    (tmp_path / "Not An Id.png").write_bytes(b"")
    found = discover(tmp_path)
    assert list(found) == ["plain"]
    assert found["plain"].name == "plain" and found["plain"].welcome_audio is None


def test_file_sha256_changes_with_content(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"a")
    first = file_sha256(p)
    p.write_bytes(b"b")
    assert len(first) == 64 and file_sha256(p) != first


@pytest.mark.parametrize("tid", ["astronaut", "astronaut_loop"])
def test_faces_inside_frame_and_mouth_inside_box(tracks, tid):
    frames, track = tracks[tid]
    n, h, w = frames.shape[:3]
    assert track.boxes.shape == (n, 4) and track.boxes.dtype == np.int32
    x1, y1, x2, y2 = track.boxes.T
    assert np.all((x1 >= 0) & (x1 < x2) & (x2 <= w) & (y1 >= 0) & (y1 < y2) & (y2 <= h))
    # The astronaut's face: roughly 90 px wide around x ≈ 225, y ≈ 125.
    assert np.all(np.abs((x1 + x2) / 2 - 225) < 20) and np.all(np.abs((y1 + y2) / 2 - 128) < 20)
    assert np.all((x2 - x1 > 60) & (x2 - x1 < 130))
    assert track.mouth.shape == (n, 2)
    assert np.all((track.mouth > CROP_SIZE * 0.2) & (track.mouth < CROP_SIZE * 0.95))
    assert np.all(track.mouth[:, 1] > CROP_SIZE / 2)  # the mouth is in the lower half


def test_video_boxes_are_smooth(tracks):
    _, track = tracks["astronaut_loop"]
    steps = np.abs(np.diff(track.boxes.astype(int), axis=0))
    assert steps.max() <= 2  # the sway moves the head ≤ ~1 px per frame
    assert np.ptp(track.boxes[:, 0]) >= 3  # …but the boxes do follow it


def test_no_face_is_bad_input():
    blank = np.full((2, 128, 128, 3), 127, np.uint8)
    with pytest.raises(BadInput, match=r"blank\.mp4"):
        detect_faces(blank, "blank.mp4")


def test_blend_box_and_mask(tracks):
    _frames, track = tracks["astronaut"]
    blend = blend_boxes(track.boxes)
    fb, bb = track.boxes[0], blend[0]
    assert bb[0] <= fb[0] and bb[1] <= fb[1] and bb[2] >= fb[2] and bb[3] >= fb[3]
    mask = jaw_mask(fb, bb)
    assert mask.shape == (CROP_SIZE, CROP_SIZE) and mask.dtype == np.uint8
    # Face box in mask coordinates: weight only in its lower half, full in the jaw's middle.
    s = CROP_SIZE / (bb[2] - bb[0]), CROP_SIZE / (bb[3] - bb[1])
    fx1, fx2 = int((fb[0] - bb[0]) * s[0]), int((fb[2] - bb[0]) * s[0])
    fy1, fy2 = int((fb[1] - bb[1]) * s[1]), int((fb[3] - bb[1]) * s[1])
    middle = (fy1 + fy2) // 2
    assert mask[:middle].max() == 0
    assert mask[: fy1 + 1].max() == 0 and mask[:, :fx1].max() == 0 and mask[:, fx2:].max() == 0
    assert mask[(middle + fy2) // 2, (fx1 + fx2) // 2] == 255
    assert 0 < mask[middle + 3, (fx1 + fx2) // 2] < 255  # soft edge


def test_blend_box_is_the_official_padded_square():
    # get_crop_box: centre (x1 + x2) // 2, half side int(max(w, h) // 2 * 1.5); not clipped.
    boxes = np.array([[0, 0, 100, 121], [5, 7, 58, 40]], np.int32)
    out = blend_boxes(boxes)
    assert out.tolist() == [[-40, -30, 140, 150], [-8, -16, 70, 62]]


EDGE_FACES = {  # a 100×110 face box touching each edge of a 320×240 frame
    "left": [0, 60, 100, 170],
    "right": [220, 60, 320, 170],
    "top": [110, 0, 210, 110],
    "bottom": [110, 130, 210, 240],
}


@pytest.mark.parametrize("edge", sorted(EDGE_FACES))
def test_a_face_at_the_frame_edge_keeps_a_centred_padded_square(edge):
    frame = np.random.default_rng(1).integers(1, 256, (240, 320, 3), dtype=np.uint8)
    face = np.array([EDGE_FACES[edge]], np.int32)
    ((bx1, by1, bx2, by2),) = blend_boxes(face)
    assert bx2 - bx1 == by2 - by1 == 2 * int(110 // 2 * 1.5)  # square, 1.5× the larger side
    assert (bx1 + bx2) // 2 == (face[0, 0] + face[0, 2]) // 2  # centred on the face
    assert bx1 < 0 or by1 < 0 or bx2 > 320 or by2 > 240  # reaches outside the frame
    crop = padded_crop(frame, np.array([bx1, by1, bx2, by2]))
    assert crop.shape == (by2 - by1, bx2 - bx1, 3)
    inside = np.zeros(crop.shape[:2], bool)
    inside[max(0, -by1) : 240 - by1, max(0, -bx1) : 320 - bx1] = True
    assert np.all(crop[~inside] == 0) and np.all(crop[inside] > 0)  # black padding, as PIL
    # The geometric mask's upper boundary is the padded face box's middle, wherever the edge.
    mask = jaw_mask(face[0], np.array([bx1, by1, bx2, by2]))
    scale = 256 / (by2 - by1)
    middle = (face[0, 1] + 0.5 * (face[0, 3] - face[0, 1]) - by1) * scale
    assert mask[: int(middle)].max() == 0 and mask[int(middle) + 12 :].max() == 255
