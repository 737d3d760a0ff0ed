"""Profiles of pipeline services (restarted under a profiler) or of in-process code.

A development aid for finding what limits a figure (`python -m bench --profile ...`); the
profiler slows what it measures, so profiled runs' figures are not comparable with others.
See `bench.service_profile` for the profiler used.
"""

import asyncio
import cProfile
import io
import json
import os
import pstats
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.report import Section
from bench.service_profile import self_time_by_library
from bench.stack import BenchPipeline


async def restart_under_profiler(
    pipeline: BenchPipeline, names: Sequence[str], out_dir: Path, warmup: Sequence[Path], batch: str
) -> dict[str, Path]:
    """Restart each named service under the profiler; it writes its findings when it stops."""
    unknown = [n for n in names if n not in pipeline.group.processes]
    if unknown:
        raise SystemExit(f"no service {unknown}; choose from {sorted(pipeline.group.processes)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name in names:
        out = out_dir / f"profile-{name}.txt"
        argv = pipeline.group.processes[name].argv  # [python, "-m", module, *args]
        await asyncio.to_thread(pipeline.group.kill, name, signal.SIGTERM)
        pipeline.group.start(name, [argv[0], "-m", "bench.service_profile", str(out), *argv[2:]])
        outputs[name] = out
    # The restarted consumers have rejoined their groups once a batch went through again.
    await pipeline.submit(batch, warmup)
    await pipeline.wait_complete(batch, timeout_s=300)
    return outputs


@contextmanager
def profiled(out: Path) -> Iterator[None]:
    """Profile the code run inside the block (this process), like `service_profile` does."""
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = os.environ.get("BENCH_PYINSTRUMENT_PATH")
    if extra and extra not in sys.path:
        sys.path.append(extra)
    try:
        from pyinstrument import Profiler  # type: ignore[import-not-found]
    except ImportError:
        profile = cProfile.Profile(time.process_time)
        profile.enable()
        try:
            yield
        finally:
            profile.disable()
            profile.dump_stats(str(out.with_suffix(".pstats")))
        return
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        session = profiler.stop()
        session.save(str(out.with_suffix(".pyisession")))
        out.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        libs = self_time_by_library(session.root_frame())
        out.with_suffix(".libs.json").write_text(json.dumps(dict(libs.most_common()), indent=1))


def library_shares(libs: dict[str, float], limit: int = 12) -> list[str]:
    busy = {k: v for k, v in libs.items() if k != "(waiting for I/O)"}
    total = sum(busy.values()) or 1.0
    lines = [f"busy {total:.1f} s sampled; share of busy time by library:"]
    lines += [f"  {v / total:6.1%}  {k}" for k, v in list(busy.items())[:limit]]
    return lines


def top_functions(path: Path, limit: int = 20) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.strip_dirs().sort_stats("tottime").print_stats(limit)
    body = buffer.getvalue()
    return body[body.index("   ncalls") :]


def profile_section(profiles: dict[str, Path]) -> Section:
    section = Section("Profiles")
    for name, out in profiles.items():
        libs_path, pstats_path = out.with_suffix(".libs.json"), out.with_suffix(".pstats")
        if libs_path.exists():
            text = library_shares(json.loads(libs_path.read_text()))
            where = f"call tree: `{out}`"
        elif pstats_path.exists():
            text = top_functions(pstats_path).rstrip().splitlines()
            where = f"cProfile (CPU clock; inflates call-heavy code): `{pstats_path}`"
        else:
            section.details += [f"No profile of {name} at {out} (it did not stop cleanly).", ""]
            continue
        section.details += [f"{name} — {where}", "", "```", *text, "```", ""]
    return section
