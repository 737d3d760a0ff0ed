"""A service's large buffers stay out of the C heap (issue 6, figure 5: bounded peak memory).

Each case runs in a fresh interpreter: glibc's thresholds are process-wide, and what this
test process allocated before would decide where the next buffer goes.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# After a large block was freed, where does the next (smaller) large buffer come from?
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from shared.runtime.heap import keep_large_buffers_out_of_the_heap

    class MallInfo(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo
    if sys.argv[1] == "fixed":
        assert keep_large_buffers_out_of_the_heap()
    fetched = bytearray(2 << 20)  # a fetch response, say
    del fetched
    before = libc.mallinfo2()
    buffer = bytearray(1 << 20)
    after = libc.mallinfo2()
    print(after.hblkhd - before.hblkhd, after.arena - before.arena)
    """
)


def mapped_and_heap_growth(mode: str) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    mapped, heap = done.stdout.split()
    return int(mapped), int(heap)


def glibc_with_mallinfo2() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "mallinfo2")


pytestmark = pytest.mark.skipif(not glibc_with_mallinfo2(), reason="needs glibc >= 2.33")


def test_glibc_alone_carves_a_large_buffer_from_the_heap_after_a_larger_one_was_freed() -> None:
    # The behaviour the fix is for: if glibc changed it, the test below proves nothing.
    mapped, heap = mapped_and_heap_growth("default")
    assert mapped == 0
    assert heap >= 1 << 20


def test_with_fixed_thresholds_a_large_buffer_gets_a_mapping_of_its_own() -> None:
    mapped, heap = mapped_and_heap_growth("fixed")
    assert mapped >= 1 << 20
    assert heap < 1 << 20
