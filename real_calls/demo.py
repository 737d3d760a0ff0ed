"""`make demo-real`: about 20 spoken calls through the whole pipeline on the reference host.

The GPU stages call model_host's real models (the LLM stages stay on the simulator's LLM API);
prints each call's transcript, language and IVR flag, and the word error rate against its script.
"""

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from cli.local_stack import PipelineConfig, create_topics, start_pipeline
from cli.processes import exit_on_sigterm
from cli.upload import submit
from real_calls.outcome import CallOutcome, read_outcomes
from real_calls.scripts import CALLS, CallScript
from real_calls.synth import make_calls
from real_calls.wer import corpus_wer
from services.dashboard.summary import batch_summary

# The languages the scripts are in: lid picks among them (MODEL_HOST_LID_LANGUAGES).
LID_LANGUAGES = '["en", "es", "fr", "de", "hi"]'
HOST_ENV = {
    "MODEL_HOST_LID_LANGUAGES": LID_LANGUAGES,
    # Real models on two shared CPU cores: a call waits behind the others for a model slot,
    # longer than the simulator's answers ever take.
    "GPU_REQUEST_TIMEOUT_S": "120",
}


def host_env(workdir: Path) -> dict[str, str]:
    return {**HOST_ENV, "MODEL_HOST_DENOISED_DIR": str((workdir / "denoised").resolve())}


async def run_calls(
    config: PipelineConfig, calls: tuple[CallScript, ...], workdir: Path, timeout_s: float
) -> tuple[list[CallOutcome], float]:
    """Upload the calls as one batch; their outcomes, and the seconds from upload to finish."""
    paths = [p.resolve() for p in make_calls(calls=calls)]
    scripts = {p.name: call for p, call in zip(paths, calls, strict=True)}
    batch_id = f"real-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    await create_topics(config)
    from services.tracker.migrate import migrate

    await migrate(config.database_url)
    group = start_pipeline(config, workdir / "logs" / batch_id)
    print(f"services and the reference host running, logs in {group.log_dir}", flush=True)
    engine = create_async_engine(config.database_url)
    try:
        t0 = time.monotonic()
        await submit(config.bootstrap, config.settings().topics, batch_id, paths)
        print(f"submitted batch {batch_id}: {len(paths)} calls", flush=True)
        last = ""
        while True:
            if dead := group.dead():
                raise RuntimeError("exited: " + ", ".join(str(p.log_path) for p in dead))
            summary = await batch_summary(engine, batch_id)
            if summary is not None:
                line = f"[{summary.status}] " + " ".join(
                    f"{s.stage}:{s.done + s.failed}" for s in summary.stages
                )
                if line != last:
                    print(f"{time.monotonic() - t0:6.1f} s {line}", flush=True)
                    last = line
                if summary.finished:
                    break
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"batch {batch_id} not finished in {timeout_s:.0f} s")
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - t0
        return await read_outcomes(engine, batch_id, scripts), elapsed
    finally:
        await engine.dispose()
        await asyncio.to_thread(group.stop_all)


def render(outcomes: list[CallOutcome], elapsed_s: float) -> str:
    lines = []
    for o in outcomes:
        wer = "" if o.wer is None else f" WER {o.wer:.2f}"
        route = o.state or "?"
        if o.triage_rule:
            route += f" ({o.triage_rule})"
        lines.append(
            f"{o.script.name:16} ivr={o.is_ivr!s:5} (script {o.script.ivr!s:5}) "
            f"language={o.language} (script {o.script.language}) {route}{wer}"
        )
        if o.failed:
            lines.append(f"    failed at {o.failed}")
        if o.transcript is not None:
            lines.append(f"    {o.transcript}")
    pairs = [(o.script.text, o.transcript) for o in outcomes if o.transcript is not None]
    right_ivr = sum(o.is_ivr == o.script.ivr for o in outcomes)
    right_lang = sum(o.language == o.script.language for o in outcomes)
    lines.append(
        f"{len(outcomes)} calls in {elapsed_s:.1f} s ({60 * len(outcomes) / elapsed_s:.1f} files "
        f"per minute); IVR right {right_ivr}/{len(outcomes)}, language right "
        f"{right_lang}/{len(outcomes)}; WER {corpus_wer([(r, h) for r, h in pairs if h]):.3f} "
        f"over the {len(pairs)} transcribed calls"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=len(CALLS), help="first N calls only")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/demo-real"))
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    exit_on_sigterm()
    config = PipelineConfig(
        database_url=os.environ.get("DATABASE_URL", PipelineConfig.database_url),
        gpu_hosts="127.0.0.2:2",
        gpu_server="model_host",
        extra_env=host_env(args.workdir),
    )
    outcomes, elapsed = asyncio.run(
        run_calls(config, CALLS[: args.calls], args.workdir, args.timeout)
    )
    print(render(outcomes, elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
