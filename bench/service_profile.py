"""`python -m bench.service_profile OUT MODULE [ARGS...]`: run MODULE as __main__ under a
profiler and write what it found to OUT (.txt) and OUT.libs.json when the module exits.

pyinstrument (a sampling profiler, a development tool and not a dependency: point
BENCH_PYINSTRUMENT_PATH at a folder it was installed into with `pip install --target`) is
used when it can be imported: its overhead is small, so shares of time stay true. Otherwise
cProfile with a CPU clock, whose cost per function call inflates call-heavy code.
"""

import cProfile
import json
import os
import re
import runpy
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

IDLE_FUNCTIONS = {"epoll.poll", "select.epoll.poll", "poll", "select"}


def library_of(path: str | None) -> str:
    """A readable owner of a source file: site-packages name, our package, or stdlib module."""
    if not path:
        return "builtins"
    if "importlib" in path and "frozen" in path:
        return "importlib"
    for pattern, fmt in (
        (r"site-packages/([^/]+)", "{}"),
        (r"/(shared|services|bench|cli|simulator)/", "{} (ours)"),
        (r"python3\.\d+/([^/]+?)(?:\.py)?(?:/|$)", "stdlib {}"),
    ):
        m = re.search(pattern, path)
        if m:
            return fmt.format(m.group(1))
    return path


def self_time_by_library(root: Any) -> Counter[str]:
    """Sampled time of each frame not spent in its children, summed per library.

    pyinstrument keeps a frame's own time in synthetic `[self]` children and shows C
    functions as `<built-in>` frames: both count for the Python frame that called them,
    except the event loop's wait for I/O (epoll), which is idle time.
    """
    found: Counter[str] = Counter()
    stack: list[tuple[Any, str]] = [(root, library_of(root.file_path))]
    while stack:
        frame, caller = stack.pop()
        path = frame.file_path
        if path is None or path.startswith("<built-in"):
            owner = "(waiting for I/O)" if frame.function in IDLE_FUNCTIONS else caller
        else:
            owner = library_of(path)
        children = list(frame.children)
        own = frame.time - sum(c.time for c in children)
        if own > 0:
            found[owner] += own
        stack.extend((c, owner) for c in children)
    return found


def run_sampled(out: Path, module: str, profiler_cls: Any) -> None:
    profiler = profiler_cls(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        session = profiler.stop()
        session.save(str(out.with_suffix(".pyisession")))
        out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        libs = self_time_by_library(session.root_frame())
        out.with_suffix(".libs.json").write_text(json.dumps(dict(libs.most_common()), indent=1))


def run_cprofile(out: Path, module: str) -> None:
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(str(out.with_suffix(".pstats")))


def main(argv: list[str]) -> None:
    out, module, *args = argv
    extra = os.environ.get("BENCH_PYINSTRUMENT_PATH")
    if extra:
        sys.path.append(extra)
    sys.argv = [module, *args]
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found]
    except ImportError:
        run_cprofile(Path(out), module)
    else:
        run_sampled(Path(out), module, Profiler)


if __name__ == "__main__":
    main(sys.argv[1:])
