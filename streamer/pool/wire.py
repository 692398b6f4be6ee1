"""The message format between the web process and its workers: a JSON header and raw arrays.

No pickle crosses the pipe: a header names each array's dtype and shape, and arrays are
rebuilt with `np.frombuffer`, so a worker can only ever send data, never objects.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from streamer.errors import StreamerError, error_class
from streamer.render.base import RenderJob

DTYPES = {"uint8", "int16", "int32", "int64", "float16", "float32", "float64", "bool"}
_LEN = struct.Struct("<I")


def encode(meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    specs, blobs, offset = [], [], 0
    for name, array in (arrays or {}).items():
        array = np.ascontiguousarray(array)
        if array.dtype.name not in DTYPES:
            raise TypeError(f"array {name!r} has unsupported dtype {array.dtype}")
        specs.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "offset": offset})
        blobs.append(array.tobytes())
        offset += array.nbytes
    header = json.dumps({"meta": meta, "arrays": specs}).encode()
    return b"".join([_LEN.pack(len(header)), header, *blobs])


def decode(data: bytes | memoryview) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A message's header and its arrays, which are views of `data` (not copies)."""
    view = memoryview(data)
    (size,) = _LEN.unpack_from(view)
    header = json.loads(bytes(view[_LEN.size : _LEN.size + size]))
    body = view[_LEN.size + size :]
    arrays = {}
    for spec in header["arrays"]:
        if spec["dtype"] not in DTYPES:
            raise ValueError(f"unsupported dtype {spec['dtype']!r}")
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        array = np.frombuffer(body, dtype=dtype, count=count, offset=spec["offset"])
        arrays[spec["name"]] = array.reshape(spec["shape"])
    return header["meta"], arrays


def job_message(job: RenderJob, due_in_s: float) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a render job (`due_in_s` as of sending; null when never due)."""
    meta: dict[str, Any] = {
        "op": "render",
        "template_id": job.template_id,
        "first_unit": int(job.first_unit),
        "final": bool(job.final),
        "session_id": job.session_id,
        "due_in_s": due_in_s if math.isfinite(due_in_s) else None,
    }
    arrays: dict[str, np.ndarray] = {
        "positions": np.asarray(job.positions, dtype=np.int64),
        "audio": job.audio.astype(np.float32, copy=False),
    }
    return meta, arrays


def job_from_message(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> RenderJob:
    due = meta.get("due_in_s")
    return RenderJob(
        template_id=str(meta["template_id"]),
        positions=arrays["positions"],
        audio=arrays["audio"],
        first_unit=int(meta["first_unit"]),
        final=bool(meta["final"]),
        session_id=str(meta.get("session_id", "")),
        due_in_s=math.inf if due is None else float(due),
    )


def error_reply(exc: BaseException) -> dict[str, Any]:
    """An exception as reply fields: its class survives the pipe when it is a `StreamerError`."""
    name = type(exc).__name__ if isinstance(exc, StreamerError) else "StreamerError"
    return {
        "ok": False,
        "error": str(exc) if isinstance(exc, StreamerError) else f"{type(exc).__name__}: {exc}",
        "error_class": name,
    }


def reply_error(reply: dict[str, Any], context: str) -> StreamerError:
    """The error a failed reply carries, as its own class, its message prefixed with `context`."""
    return error_class(str(reply.get("error_class", "")))(f"{context}: {reply.get('error')}")
