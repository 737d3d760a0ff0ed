"""`make bench-real`: what a GPU host must beat, on real audio, on this machine.

1. Each stage's real-time factor on the reference host's models, one call at a time in this
   process (model time over audio seconds; no HTTP, no queueing).
2. Files per minute through the whole pipeline (every service a process, the host's models
   behind the GPU stages), from upload to the batch's end.
3. The word error rate against the scripts, the language id and IVR flags against them.

Writes reports/real-audio.md and .json (the path is the last line).
"""

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from cli.local_stack import PipelineConfig
from model_host.api import STAGES, ModelRequest
from model_host.models import Models
from model_host.settings import HostSettings
from real_calls.demo import HOST_ENV, host_env, render, run_calls
from real_calls.scripts import CALLS, CallScript
from real_calls.synth import make_calls
from real_calls.wer import corpus_wer, word_error_rate


def stage_rtfs(calls: tuple[CallScript, ...], workdir: Path) -> list[dict[str, Any]]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    languages = json.loads(HOST_ENV["MODEL_HOST_LID_LANGUAGES"])
    settings = HostSettings(lid_languages=languages, denoised_dir=workdir / "denoised")
    t0 = time.perf_counter()
    models = Models.load(settings)
    load_s = time.perf_counter() - t0
    rows = []
    for call, path in zip(calls, make_calls(calls=calls), strict=True):
        uri = path.resolve().as_uri()
        row: dict[str, Any] = {"call": call.name, "load_s": load_s}
        answers: dict[str, Any] = {}
        for stage in STAGES:
            inputs = {"language": answers["lid"].language} if stage == "stt" else {}
            request = ModelRequest(batch_id="bench", file_name=path.name, audio_uri=uri,
                                   inputs=inputs)  # fmt: skip
            t = time.perf_counter()
            answers[stage] = getattr(models, stage)(request)
            row[f"{stage}_s"] = time.perf_counter() - t
            if stage == "denoise":
                uri = answers[stage].denoised_uri
        audio_s = answers["denoise"].duration_s
        row.update(
            audio_s=audio_s,
            **{f"{s}_rtf": row[f"{s}_s"] / audio_s for s in STAGES},
            language=answers["lid"].language,
            script_language=call.language,
            is_ivr=answers["ivr"].is_ivr,
            script_ivr=call.ivr,
            transcript=answers["stt"].transcript,
            reference=call.text,
            wer=word_error_rate(call.text, answers["stt"].transcript),
        )
        rows.append(row)
        print(f"{call.name}: " + " ".join(f"{s} {row[f'{s}_rtf']:.3f}" for s in STAGES), flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    audio = sum(r["audio_s"] for r in rows)
    out: dict[str, Any] = {"calls": len(rows), "audio_s": round(audio, 1)}
    for s in STAGES:
        out[f"{s}_rtf_overall"] = round(sum(r[f"{s}_s"] for r in rows) / audio, 4)
        out[f"{s}_rtf_median"] = round(statistics.median(r[f"{s}_rtf"] for r in rows), 4)
    english = [r for r in rows if r["script_language"] == "en" and not r["script_ivr"]]
    others = [r for r in rows if r["script_language"] != "en"]
    out["wer_english_conversations"] = round(
        corpus_wer([(r["reference"], r["transcript"]) for r in english]), 3
    )
    out["wer_other_languages"] = round(
        corpus_wer([(r["reference"], r["transcript"]) for r in others]), 3
    )
    out["language_right"] = sum(r["language"] == r["script_language"] for r in rows)
    out["ivr_right"] = sum(r["is_ivr"] == r["script_ivr"] for r in rows)
    return out


def write_report(report: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "real-audio.json").write_text(json.dumps(report, indent=2) + "\n")
    s, p = report["stages"], report.get("pipeline")
    lines = [
        "# Real audio on the reference host",
        "",
        f"Run {report['started']} on {report['cpus']} CPUs, load average "
        f"{report['load_before']} before and {report['load_after']} after (the machine is "
        "shared: figures under load are slower). `make bench-real`; details in real-audio.json.",
        "",
        f"## Stages, one call at a time ({s['calls']} calls, {s['audio_s']} s of audio)",
        "",
        "| stage | real-time factor, all calls | median per call |",
        "|---|---|---|",
        *(f"| {st} | {s[f'{st}_rtf_overall']} | {s[f'{st}_rtf_median']} |" for st in STAGES),
        "",
        f"Word error rate: {s['wer_english_conversations']} on the English conversations "
        f"(Whisper tiny.en), {s['wer_other_languages']} on the espeak-ng calls in other "
        f"languages (Whisper base). Language right {s['language_right']}/{s['calls']}, "
        f"IVR right {s['ivr_right']}/{s['calls']}.",
        "",
    ]
    if p:
        lines += [
            "## The whole pipeline",
            "",
            f"{p['files']} files in {p['elapsed_s']} s: {p['files_per_minute']} files per "
            "minute from upload to the batch's end (one reference host, `127.0.0.2:2`, two "
            "model slots; LLM stages on the simulator).",
            "",
            "```",
            p["table"],
            "```",
            "",
        ]
    path = out / "real-audio.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=len(CALLS))
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench-real"))
    parser.add_argument("--out", type=Path, default=Path("reports"))
    args = parser.parse_args()
    calls = CALLS[: args.calls]
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 1),
    }
    rows = stage_rtfs(calls, args.workdir)
    report["stages"] = summary(rows)
    report["calls"] = rows
    if not args.no_pipeline:
        config = PipelineConfig(
            database_url=os.environ.get("DATABASE_URL", PipelineConfig.database_url),
            gpu_hosts="127.0.0.2:2",
            gpu_server="model_host",
            extra_env=host_env(args.workdir),
        )
        outcomes, elapsed = asyncio.run(run_calls(config, calls, args.workdir, 1200.0))
        report["pipeline"] = {
            "files": len(outcomes),
            "elapsed_s": round(elapsed, 1),
            "files_per_minute": round(60 * len(outcomes) / elapsed, 2),
            "table": render(outcomes, elapsed),
        }
    report["load_after"] = round(os.getloadavg()[0], 1)
    print(write_report(report, args.out))


if __name__ == "__main__":
    main()
