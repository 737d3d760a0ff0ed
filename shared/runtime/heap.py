"""Keep large buffers out of the C heap, so a service's peak memory does not creep up by batch.

Why (glibc raises its thresholds after a large free, then Kafka buffers fragment the heap) and
the measurements: bench/FINDINGS.md, "Memory", "llm_stage's growth is the C heap".
"""

import ctypes
import logging

log = logging.getLogger(__name__)

# From glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGE_BUFFER_BYTES = 128 * 1024


def keep_large_buffers_out_of_the_heap(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Fix glibc's mmap and trim thresholds; False where the C library has no `mallopt`.

    Call it first thing in a service's main: buffers already carved from the heap stay there.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc (musl has a stub that returns 0)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    fixed = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, threshold)
    )
    if not fixed:
        log.info("the C library ignored mallopt: large buffers may stay in the heap")
    return fixed
