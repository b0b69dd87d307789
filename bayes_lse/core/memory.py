"""Handing freed memory back to the system between the stages of a large fit."""

from __future__ import annotations

import sys


def release_free_memory() -> None:
    """Hand cached free memory back to the system between the stages of a fit: before the
    optimiser's large arrays arrive, after amortised training, before a model is written.

    Reading a log goes through Arrow string columns; Arrow's allocator (mimalloc)
    keeps what the reader's temporaries freed. On ASSISTments with items as lessons
    that was ~60 MB of the MAP fit's 610 MB peak (docs/benchmarks.md). glibc's malloc
    likewise keeps freed heap pages of the reader's numpy/pandas temporaries (its
    mmap threshold grows with the first large free), ~70 MB there; `malloc_trim`
    returns them. Both only release memory nothing refers to."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    malloc_trim()


def malloc_trim() -> None:
    """glibc's malloc_trim(0) where there is one (Linux); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # musl or another libc without malloc_trim
        pass
