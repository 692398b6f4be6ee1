"""The message format between the web process and its workers: a JSON header and raw arrays.

No pickle crosses the pipe: a header names each array's dtype and shape, and arrays are
rebuilt with `np.frombuffer`, so a worker can only ever send data, never objects.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

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


def decode(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    (size,) = _LEN.unpack_from(data)
    header = json.loads(data[_LEN.size : _LEN.size + size])
    body = memoryview(data)[_LEN.size + size :]
    arrays = {}
    for spec in header["arrays"]:
        if spec["dtype"] not in DTYPES:
            raise ValueError(f"unsupported dtype {spec['dtype']!r}")
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        array = np.frombuffer(body, dtype=dtype, count=count, offset=spec["offset"])
        arrays[spec["name"]] = array.reshape(spec["shape"])
    return header["meta"], arrays
