"""Keep the heap from growing: tune glibc's allocator at start, give freed memory back.

Each session churns through megabytes of frames, crops and codec buffers, and aiortc's peer
connection objects sit in reference cycles that only a full collection frees. Left alone,
glibc keeps much of that: it raises its mmap threshold each time a big block is freed (so later
frames come from the heap and fragment it) and opens up to eight heaps per core for the threads.
bench/soak.py measures the difference (docs/scaling.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 * 2**20
"""In the web process, blocks this big are mapped and unmapped on their own, and the threshold
stays put. Frames and a window's crops (up to ~3 MiB) stay below it: mapping each of those
anew costs a page fault per 4 KiB, which bench/cpu.py showed as 15 % more CPU at 256 KiB."""
ARENAS = 2
GC_YOUNG_THRESHOLD = 10_000

_libc_name = ctypes.util.find_library("c")
_libc = ctypes.CDLL(_libc_name) if _libc_name else None


def tune_malloc(fixed_mmap_threshold: bool = False) -> None:
    """Two heaps for all threads, and in the web process (`fixed_mmap_threshold`) a threshold that
    does not ratchet up; glibc only, called early, before threads. An operator's own
    `GLIBC_TUNABLES` wins. (bench/soak.py: a worker's memory stayed flatter with glibc's own
    threshold, the web process's with a fixed one.)"""
    mallopt = getattr(_libc, "mallopt", None)
    if mallopt is None or "GLIBC_TUNABLES" in os.environ:
        return
    mallopt(M_ARENA_MAX, ARENAS)
    if fixed_mmap_threshold:
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def freeze_startup_objects() -> None:
    """Once serving: what exists now (modules, settings, templates) moves where the collector
    never looks again, and young collections wait for 10,000 new objects instead of 700. aiortc
    makes several objects per RTP packet; the collector's passes over everything else showed as
    a visible share of the event loop's time (bench/cpu.py)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def release_free_memory() -> None:
    """Collect cycles, then return free heap pages to the system (the latter on glibc only)."""
    gc.collect()
    malloc_trim = getattr(_libc, "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
