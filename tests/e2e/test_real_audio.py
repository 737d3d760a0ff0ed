"""Spoken calls through the whole pipeline on the reference host's real models (model_host/).

Real speech (real_calls/: piper and espeak-ng, telephone band, noise, DTMF keys) checked for
structure and keywords, not exact text: a model upgrade may change a word, not the outcome.
"""

import uuid
from pathlib import Path

import pytest

from cli.upload import submit
from real_calls.demo import host_env
from real_calls.outcome import read_outcomes
from real_calls.scripts import BY_NAME
from real_calls.synth import make_calls
from real_calls.wer import words
from tests.pipeline_harness import running_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.real_audio]

# English on tiny.en, an IVR menu with a key press, Spanish on the multilingual model.
CALLS = tuple(BY_NAME[n] for n in ("en-refund", "ivr-main-menu", "es-saldo"))


async def test_spoken_calls_get_transcripts_languages_and_ivr_flags(
    kafka_bootstrap: str, topic_prefix: str, mariadb_url: str, tmp_path: Path
) -> None:
    paths = [p.resolve() for p in make_calls(calls=CALLS)]
    scripts = {p.name: call for p, call in zip(paths, CALLS, strict=True)}
    batch = f"real-{uuid.uuid4().hex[:8]}"
    async with running_pipeline(
        topic_prefix,
        mariadb_url,
        tmp_path / "logs",
        kafka_bootstrap,
        gpu_hosts="127.0.0.2:2",
        gpu_server="model_host",
        extra_env=host_env(tmp_path),
    ) as pipeline:
        await submit(kafka_bootstrap, pipeline.config.settings().topics, batch, paths)
        await pipeline.wait_finished(batch, timeout_s=240)
        outcomes = {o.script.name: o for o in await read_outcomes(pipeline.engine, batch, scripts)}

    call = outcomes["en-refund"]
    assert call.state == "done", (call.failed, call.triage_rule)
    assert call.is_ivr is False and call.language == "en", call.answers
    heard = set(words(call.transcript or ""))
    assert set(BY_NAME["en-refund"].keywords) <= heard, call.transcript
    # The denoised audio is where denoise said, and the later stages read it.
    denoised = call.answers["denoise"]["denoised_uri"]
    assert denoised.startswith("file://") and Path(denoised[7:]).is_file()
    assert str(tmp_path / "denoised") in denoised

    menu = outcomes["ivr-main-menu"]
    assert menu.is_ivr is True, menu.answers.get("ivr")
    assert menu.state == "skipped" and menu.triage_rule == "ivr_only"
    assert "1" in menu.answers["ivr"]["dtmf"], menu.answers["ivr"]

    spanish = outcomes["es-saldo"]
    assert spanish.language == "es", spanish.answers.get("lid")
    assert spanish.state == "done", (spanish.failed, spanish.triage_rule)
    assert set(BY_NAME["es-saldo"].keywords) <= set(words(spanish.transcript or "")), (
        spanish.transcript
    )
