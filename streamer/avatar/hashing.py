"""SHA-256 of files, computed once per (path, size, mtime) and remembered.

Weight files are large (the v1.5 UNet is 3.4 GB): hashing them on every start costs seconds.
A digest is reused while the file's path, size and modification time are unchanged, within the
process and, when a `store` file is given (e.g. `cache/hashes.json`), across starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_memo: dict[str, str] = {}


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _digest(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read_store(store: Path) -> dict[str, str]:
    try:
        data = json.loads(store.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_store(store: Path, data: dict[str, str]) -> None:
    """Atomic replace; a store that cannot be written only costs a re-hash next start."""
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hashes.", dir=store.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, store)
    except OSError as exc:
        log.warning("cannot remember file hashes in %s: %s", store, exc)


def file_sha256(path: Path, store: Path | None = None) -> str:
    """Hex SHA-256 of the file at `path`, reused while its path, size and mtime are unchanged."""
    path = Path(path)
    stamp = _stamp(path)
    if stamp in _memo:
        return _memo[stamp]
    known = _read_store(Path(store)) if store is not None else {}
    digest = known.get(stamp) or _digest(path)
    _memo[stamp] = digest
    if store is not None and known.get(stamp) != digest:
        _write_store(Path(store), known | {stamp: digest})
    return digest
