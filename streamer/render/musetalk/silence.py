"""Rest in silence: the template's own (closed) mouth during pauses, without ghosted lips.

MuseTalk moves the mouth even in silence. A unit (40 ms) is voiced when webrtcvad calls either
of its 20 ms frames speech, or its neighbour's (the VAD can be a frame late at an onset or early
in a fading tail); a pause is a run of at least `MIN_REST_UNITS` unvoiced units (200 ms),
so short gaps inside speech and quiet voiced endings keep the model's mouth. The audio is known
ahead of the frames, so a pause is recognised on its first frame: that frame and the pause's
last frame (one before speech resumes) blend the two mouths half and half; every frame between
shows the template's crop. No frame averages two mouths except those two.

webrtcvad adapts to the audio it has heard, so it is fed from the start of the job's audio every
time: windows of one utterance then agree where they meet.
"""

from __future__ import annotations

import numpy as np
import webrtcvad

from streamer.avatar.face import crop_face
from streamer.avatar.prepared import PreparedTemplate
from streamer.render.base import RenderJob
from streamer.units import MODEL_RATE, MODEL_SAMPLES_PER_UNIT

MIN_REST_UNITS = 5
"""Shortest pause shown as rest (5 units = 200 ms)."""
VAD_MODE = 2
"""webrtcvad aggressiveness, 0 (keeps most as speech) … 3."""
EDGE = 0.5
"""Weight of the model's mouth on the first and last frame of a pause."""
_FRAME = MODEL_RATE // 50  # 20 ms
_CONTEXT = MIN_REST_UNITS + 1


def voiced_units(audio: np.ndarray, first: int, count: int, final: bool) -> np.ndarray:
    """[count] bool: whether units first … first+count-1 of `audio` hold speech.

    Units before the audio are silent; units past its end are silent when `final`, else voiced
    (not heard yet: no pause is started on audio that may still be speech).
    """
    stop = first + count
    known = min(stop, len(audio) // MODEL_SAMPLES_PER_UNIT)
    out = np.zeros(count, bool)
    if known < stop and not final:
        out[max(known, first) - first :] = True
    if known <= 0:
        return out
    pcm = (np.clip(audio[: known * MODEL_SAMPLES_PER_UNIT], -1, 1) * 32767).astype("<i2")
    vad = webrtcvad.Vad(VAD_MODE)
    speech = np.array(
        [vad.is_speech(pcm[i : i + _FRAME].tobytes(), MODEL_RATE) for i in range(0, len(pcm), _FRAME)], bool
    )
    per_unit = np.asarray(speech.reshape(-1, MODEL_SAMPLES_PER_UNIT // _FRAME).any(axis=1), bool)
    lo = max(first, 0)
    if known > lo:
        out[lo - first : known - first] = per_unit[lo:known]
    return out


def model_weights(voiced: np.ndarray) -> np.ndarray:
    """[N] float32 weight of the model's mouth per unit: 1 outside pauses, 0 inside, `EDGE` on
    a pause's first and last unit. A pause is ≥ `MIN_REST_UNITS` unvoiced units."""
    weights = np.ones(len(voiced), np.float32)
    silent = np.concatenate([[False], ~voiced, [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    for start, stop in zip(edges[0::2], edges[1::2], strict=True):
        if stop - start >= MIN_REST_UNITS:
            weights[start:stop] = 0.0
            weights[start] = weights[stop - 1] = EDGE
    return weights


def rest_weights(audio: np.ndarray, first_unit: int, count: int, final: bool) -> np.ndarray:
    """[count] model-mouth weights of a job's frames, decided with `_CONTEXT` units each side."""
    voiced = voiced_units(audio, first_unit - _CONTEXT - 1, count + 2 * _CONTEXT + 2, final)
    widened = voiced[1:-1] | voiced[:-2] | voiced[2:]
    return model_weights(widened)[_CONTEXT : _CONTEXT + count]


def rest_in_silence(template: PreparedTemplate, job: RenderJob, frames: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Pauses show the template's own face crop (in place; returns `crops`); see above."""
    weight = rest_weights(job.audio, job.first_unit, job.frames, job.final)
    for i in np.flatnonzero(weight < 1.0):
        f = int(frames[i])
        still = crop_face(template.frames[f], template.face_boxes[f])
        mixed = weight[i] * crops[i].astype(np.float32) + (1.0 - weight[i]) * still
        crops[i] = np.round(mixed).astype(np.uint8)
    return crops
