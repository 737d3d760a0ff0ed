"""Keep large buffers out of the C heap, so a service's peak memory does not creep up by batch.

glibc serves a request above its mmap threshold (128 KiB) with a mapping of its own, given
back to the OS when freed. But each such block freed raises the threshold to its size (up to
32 MiB), and the heap's trim threshold with it: from then on Kafka fetch responses (up to
1 MiB a partition) and producer batches are carved from the heap between small long-lived
objects, and the holes they leave are never given back. The heap's high-water mark, the
process's peak RSS, then rises a little with every batch (llm_stage: 89.6 -> 95.2 MiB over
10 batches of 10,000 files; with fixed thresholds 85.6 -> 86.1 MiB; bench/FINDINGS.md).

Fixing both thresholds at glibc's initial values, as `MALLOC_MMAP_THRESHOLD_=131072` in the
environment would, stops that. It costs a mapping per large buffer, which is what glibc does
before its first large free anyway.
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
