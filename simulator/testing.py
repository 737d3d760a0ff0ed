"""Helpers for tests (ours and the product's): WAV fixtures and a simulator on free high ports."""

from __future__ import annotations

import errno
import math
import random
import struct
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from simulator.config import STAGES, SimConfig
from simulator.core import Simulator


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    """A 16-bit mono WAV holding a quiet tone (silence would be a degenerate test input)."""
    frames = int(seconds * rate)
    samples = (int(3000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


def write_corrupt_files(directory: Path) -> dict[str, Path]:
    """Files a model server must reject as undecodable: empty, random bytes, truncated."""
    good = write_wav(directory / "_source.wav", seconds=0.5)
    raw = good.read_bytes()
    files = {
        "empty": directory / "empty.wav",
        "random": directory / "random.wav",
        "truncated_header": directory / "truncated_header.wav",
        "truncated_data": directory / "truncated_data.wav",
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(random.Random(7).randbytes(4096))
    files["truncated_header"].write_bytes(raw[:20])
    files["truncated_data"].write_bytes(raw[: len(raw) // 2])
    return files


def config_for_tests(base_port: int, **overrides: Any) -> SimConfig:
    """Config on base_port+0..3 (stages), +4 (LLM), +5 (control); instant latency by default."""
    data: dict[str, Any] = {
        "hosts": [{"address": "127.0.0.2"}, {"address": "127.0.0.3"}],
        "ports": {stage: base_port + i for i, stage in enumerate(STAGES)},
        "llm_port": base_port + 4,
        "control_port": base_port + 5,
        "latency_scale": 0.0,
        "hang_s": 5.0,
    }
    data.update(overrides)
    return SimConfig.model_validate(data)


@asynccontextmanager
async def running_simulator(attempts: int = 10, **overrides: Any) -> AsyncIterator[Simulator]:
    """Start a Simulator on a random high port block, retrying if another run holds it."""
    for attempt in range(attempts):
        sim = Simulator(config_for_tests(random.randrange(15_010, 30_000, 10), **overrides))
        try:
            await sim.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise
            continue
        try:
            yield sim
        finally:
            await sim.stop()
        return
