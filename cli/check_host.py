"""`cofi check-host URL [--stage S]`: hold a GPU host to the model API contract.

Calls every route of every stage (or of `--stage`), the health route included, with good,
missing and undecodable audio and a bad request (400, or 422 as FastAPI answers: cofi treats
both as final), and the same file twice (the same answer); validates every answer with the
contract's models (`services/gpu_stage/model_contract.py`); times each call against its
timeout; prints a pass/fail table and exits 1 when a check fails (docs/gpu-model-api.md).

A `503` with `Retry-After` cannot be provoked from outside a host: run the kit again with
`--unavailable` while the host is unavailable (loading its models, or told to refuse work: the
simulator's `POST /faults {"error_rate": 1}`); without it that row is skipped. A `429` needs
the host's queue full, which one caller cannot do reliably: it is skipped too.
"""

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from cli.gpu_api import ports, timeouts
from cli.host_checks import Check, HostChecker, TestAudio
from services.gpu_stage.exchange import CallTimeouts
from shared.events import FileContext
from shared.stages import GPU_STAGES, GpuStage


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cofi check-host",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        help="the host, e.g. http://10.0.0.5 (each stage on its default port) or, with one "
        "--stage, http://10.0.0.5:5013",
    )
    parser.add_argument(
        "--stage", action="append", choices=GPU_STAGES, help="check only this stage (repeatable)"
    )
    parser.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="STAGE=PORT",
        help="a stage's port when not the default (repeatable)",
    )
    parser.add_argument(
        "--audio-dir",
        type=Path,
        help="where to write the test audio; the host must read it at the same path "
        "(default: a temporary folder, for a host on this machine)",
    )
    parser.add_argument(
        "--audio", type=Path, help="a real recording (WAV) to send instead of the generated tone"
    )
    parser.add_argument(
        "--unavailable",
        action="store_true",
        help="the host is unavailable now: check that every stage answers 503 with Retry-After",
    )
    return parser


def stage_urls(url: str, stages: list[GpuStage], overrides: list[str]) -> dict[GpuStage, str]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    chosen = ports()
    for item in overrides:
        stage, _, port = item.partition("=")
        if stage not in chosen or not port.isdigit():
            raise ValueError(f"--port {item!r}: expected STAGE=PORT, STAGE one of {GPU_STAGES}")
        chosen[stage] = int(port)
    if parts.port is not None:
        if len(stages) != 1:
            raise ValueError("a port in the URL needs exactly one --stage")
        chosen[stages[0]] = parts.port
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return {stage: f"{parts.scheme}://{host}:{chosen[stage]}" for stage in stages}


async def check(
    urls: dict[GpuStage, str], audio: TestAudio, unavailable: bool = False
) -> list[Check]:
    base, per_audio = timeouts()
    async with httpx.AsyncClient() as client:
        checker = HostChecker(client, urls, audio, CallTimeouts(base, per_audio))
        context = FileContext(
            audio_uri=audio.good.as_uri(),
            host=urlsplit(next(iter(urls.values()))).hostname,
            duration_s=audio.seconds,
        )
        for stage in urls:
            await checker.health(stage)
            if unavailable:
                await checker.unavailable(stage, context)
                continue
            context = await checker.answer(stage, context)
            await checker.errors(stage, context)
            checker.checks.append(
                Check(stage, "503 with Retry-After", "skip", "run again with --unavailable")
            )
            checker.checks.append(
                Check(stage, "429 with Retry-After", "skip", "needs the host's queue full")
            )
        return checker.checks


def table(checks: list[Check]) -> str:
    rows = [("stage", "check", "result", "detail")]
    rows += [(c.stage, c.name, c.result.upper(), c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + f"  {row[3]}"
        for row in rows
    ]
    failed = sum(c.result == "fail" for c in checks)
    passed = sum(c.result == "pass" for c in checks)
    skipped = len(checks) - failed - passed
    lines.append(f"\n{passed} passed, {failed} failed, {skipped} skipped")
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    stages: list[GpuStage] = ns.stage or list(GPU_STAGES)
    stages = [s for s in GPU_STAGES if s in stages]  # the pipeline's order: denoise first
    try:
        urls = stage_urls(ns.url, stages, ns.port)
    except ValueError as exc:
        print(f"cofi check-host: {exc}", file=sys.stderr)
        return 2
    folder = ns.audio_dir or Path(tempfile.mkdtemp(prefix="cofi-check-host-"))
    try:
        audio = TestAudio.write(folder, ns.audio)
        checks = asyncio.run(check(urls, audio, ns.unavailable))
    finally:
        if ns.audio_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(table(checks))
    return 1 if any(c.result == "fail" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
