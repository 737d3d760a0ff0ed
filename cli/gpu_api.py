"""Write docs/gpu-model-api.yaml (OpenAPI 3.1) from the code; `cli/gpu_api_md.py` writes the .md.

Requests and answers are the models of `services/gpu_stage/model_contract.py`, which the
stage validates every answer with; ports and timeouts are the settings' defaults; what each
answer means to cofi is found by running the real client (`model_api.call_model`) and a
circuit breaker (`shared/breaker.py`) against it, so the tables cannot drift from the code.
"""

import asyncio
import logging
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.gpu_stage.model_api import HEALTH_TIMEOUT_S, call_model
from services.gpu_stage.model_contract import (
    RESPONSES,
    ErrorResponse,
    HealthResponse,
    ModelRequest,
)
from services.gpu_stage.settings import GpuStageSettings
from shared.breaker import CircuitBreaker, unavailable
from shared.model_http import ModelApiClient
from shared.retry import CallOutcome
from shared.stages import GPU_STAGES

ROOT = Path(__file__).resolve().parent.parent
YAML_PATH = ROOT / "docs" / "gpu-model-api.yaml"
SCHEMAS = "#/components/schemas/{model}"

# Answers a model server gives, and when it should give them.
STATUSES: tuple[tuple[int, str], ...] = (
    (400, "the request is not what this document describes"),
    (401, "a gateway in front of the host wants credentials"),
    (403, "a gateway in front of the host refuses cofi's credentials"),
    (404, "the audio file does not exist (say which file: the message names it)"),
    (422, "the audio cannot be decoded (empty, corrupt, unsupported format)"),
    (429, "the host is at capacity (its queue is full); send `Retry-After` in seconds"),
    (500, "the model failed on this request"),
    (503, "the model is unavailable (loading, restarting, out of memory); send `Retry-After`"),
    (504, "the model did not finish in time"),
)
RETRY_AFTER = (429, 503)
TRANSIENT = (
    "retried with full-jitter exponential backoff (`GPU_RETRY_BASE_DELAY_S` doubling up to "
    "`GPU_RETRY_MAX_DELAY_S`; a `Retry-After` is a floor) until `GPU_RETRY_MAX_ATTEMPTS` "
    "attempts or `GPU_RETRY_BUDGET_S` are spent; then the file fails at this stage "
    "(`FileFailed`, `error_kind` transient) and can be sent back with `cofi retry`"
)
PERMANENT = (
    "not retried: the file fails at once at this stage (`FileFailed`, `error_kind` "
    "permanent); the batch goes on"
)
CIRCUIT = (
    "the host's circuit for the stage opens: the stage pauses and its files wait (none "
    "fails); cofi probes `GET /health` with backoff (up to `GPU_PROBE_MAX_DELAY_S` apart), "
    "then sends one waiting file as a trial call, and resumes when that call is answered. "
    "A host without `/health` (a 404 there) recovers the same way, through the trial calls "
    "alone: that is the intended contract, but serve `/health` so a host that is down costs "
    "no trial calls. Open past `GPU_HOST_FAILOVER_DEADLINE_S`, the host is dead: its files "
    "are handed back to the distributor for another host"
)
MALFORMED = (
    "a 200 that is not what the contract accepts (not a JSON object, a field missing, "
    'a field of another JSON type such as `"false"` for `is_ivr` or `null` for '
    "`transcript`) is a host defect, never the file's: retried like a 5xx and logged naming "
    "the file, the stage, the host and the field; 3 in a row open the host's circuit "
    "(`malformed`), and a file whose retries end on one waits for the circuit instead of "
    "failing. A host that keeps answering so past `GPU_HOST_FAILOVER_DEADLINE_S` has its "
    "files failed over to another host: no file fails for it"
)


@dataclass(frozen=True)
class Answer:
    what: str  # the answer, as a reader would name it
    when: str  # when a host gives it
    kind: str  # cofi's classification, from the real client
    opens_after: int | None = None  # answers in a row (on different files) that open the circuit
    same_message: bool = False  # ... only when they carry the same message
    waits: bool = False  # retries spent, the circuit opens and the file waits (not fails)


def _outcome(stage: str, reply: httpx.Response | Exception) -> CallOutcome:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def probe() -> CallOutcome:
        async with ModelApiClient(httpx.MockTransport(handler), 30.0) as client:
            request: dict[str, object] = {"batch_id": "b", "file_name": "f"}
            return await call_model(client, "http://host:1/v1/x", request, 30.0, stage=stage)

    return asyncio.run(probe())


def _opens_after(outcome: CallOutcome, same_message: bool) -> int | None:
    """How many such answers in a row, each for another file, open a circuit."""

    async def count() -> int | None:
        breaker = CircuitBreaker("stage", "host")
        for n in range(1, 31):
            error = outcome.error if same_message else f"{outcome.error} (file {n})"
            breaker.observe(replace(outcome, error=error), f"file-{n}")
            if breaker.is_open:
                return n
        return None

    quiet = logging.getLogger("shared.breaker")
    was, quiet.disabled = quiet.disabled, True
    try:
        return asyncio.run(count())
    finally:
        quiet.disabled = was


def _answer(what: str, when: str, reply: httpx.Response | Exception) -> Answer:
    outcome = _outcome("stt", reply)
    opens = _opens_after(outcome, same_message=False)
    same = _opens_after(outcome, same_message=True)
    if opens is None and same is not None:
        return Answer(what, when, outcome.error_kind or "ok", same, same_message=True)
    waits = unavailable(outcome) is not None
    return Answer(what, when, outcome.error_kind or "ok", opens, waits=waits)


@cache
def answers() -> tuple[Answer, ...]:
    out = [
        _answer(
            "200, what the contract accepts",
            "the model ran",
            httpx.Response(200, json={"transcript": "hello"}),
        ),
        _answer(
            "200, anything else",
            "(a defect: see below)",
            httpx.Response(200, json={"transcript": None}),
        ),
    ]
    for status, when in STATUSES:
        out.append(_answer(str(status), when, httpx.Response(status, json={"error": when})))
    out.append(
        _answer("no answer within the call's timeout", "a stuck model", httpx.ReadTimeout("slow"))
    )
    out.append(
        _answer("connection refused or reset", "the server is down", httpx.ConnectError("refused"))
    )
    return tuple(out)


SHORT = {
    "ok": "success: the file moves on",
    "transient": "**transient**: retried, then the file fails",
    "permanent": "**permanent**: the file fails at once",
}
# The answers that say the host cannot serve anyone now (refused, 429, 502-504): never the
# file's doing, so spent retries open the circuit instead of failing it.
WAITS_SHORT = "**transient**: retried, then the circuit opens and the file waits"
WAITS = (
    "retried with full-jitter exponential backoff (a `Retry-After` is a floor); once "
    "`GPU_RETRY_MAX_ATTEMPTS` attempts or `GPU_RETRY_BUDGET_S` are spent the host is judged "
    "unavailable, not the file, which waits (at least the `Retry-After`) instead of failing"
)
SUCCESS = "the stage's fields are read into the file's context and the file moves on"


def circuit_note(answer: Answer) -> str:
    if answer.opens_after is None:
        return ""
    if answer.opens_after == 1:
        return "the circuit opens at once"
    if answer.same_message:
        return (
            f"{answer.opens_after} in a row for different files with the same message "
            "(a missing route, not a missing file) open the circuit"
        )
    return f"{answer.opens_after} in a row open the circuit"


def meaning(answer: Answer, short: bool = False) -> str:
    note = circuit_note(answer)
    if answer.opens_after == 1:
        return "**circuit opens**: the stage pauses, its files wait" if short else CIRCUIT
    if answer.waits:
        if short:
            return WAITS_SHORT + (f"; {note}" if note else "")
        return f"{WAITS} ({note}): {CIRCUIT}" if note else f"{WAITS}: {CIRCUIT}"
    if short:
        return SHORT[answer.kind] + (f"; {note}" if note else "")
    text = {"ok": SUCCESS, "transient": TRANSIENT, "permanent": PERMANENT}[answer.kind]
    return text + (f"; {note}: {CIRCUIT}" if note else "")


def ports() -> dict[str, int]:
    settings = GpuStageSettings.model_fields
    return {stage: settings[f"{stage}_port"].default for stage in GPU_STAGES}


def timeouts() -> tuple[float, float]:
    """(base seconds, seconds per second of the call's audio) of a call's timeout."""
    fields = GpuStageSettings.model_fields
    base = fields["gpu_request_timeout_s"].default
    per_audio = fields["gpu_request_timeout_per_audio_s"].default
    return float(base), float(per_audio)


def timeout_text() -> str:
    base, per_audio = timeouts()
    return (
        f"cofi waits `GPU_REQUEST_TIMEOUT_S` ({base:g} s by default) plus "
        f"`GPU_REQUEST_TIMEOUT_PER_AUDIO_S` ({per_audio:g} s by default) per second of the "
        f"call (its `duration_s`, once known): a one-hour call waits {base + 3600 * per_audio:g} "
        f"s. `GET /health` must answer within {HEALTH_TIMEOUT_S:g} s"
    )


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [ModelRequest, ErrorResponse, HealthResponse]
    models += RESPONSES.values()
    _, schema = models_json_schema([(m, "validation") for m in models], ref_template=SCHEMAS)
    defs: dict[str, Any] = schema["$defs"]
    return defs


def _json(model: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": SCHEMAS.format(model=model)}}}


def _servers(stages: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "url": f"http://{{host}}:{ports()[stage]}",
            "description": f"every GPU host, port `{stage.upper()}_PORT`",
            "variables": {"host": {"default": "127.0.0.2"}},
        }
        for stage in stages
    ]


def _stage_path(stage: str) -> dict[str, Any]:
    model = RESPONSES[stage]  # type: ignore[index]
    responses: dict[str, Any] = {
        "200": {
            "description": f"{(model.__doc__ or '').strip()} Cofi: {SUCCESS}; {MALFORMED}.",
            "content": _json(model.__name__),
        }
    }
    for answer in answers():
        if not answer.what.isdigit():
            continue
        responses[answer.what] = {
            "description": f"When {answer.when}. Cofi: {meaning(answer)}.",
            "content": _json("ErrorResponse"),
        }
        if int(answer.what) in RETRY_AFTER:
            responses[answer.what]["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (a floor for cofi)",
                    "schema": {"type": "number", "minimum": 0},
                }
            }
    return {
        "servers": _servers((stage,)),
        "post": {
            "operationId": stage,
            "summary": f"Run the {stage} model on one file",
            "description": (
                f"{timeout_text()}. cofi sends at most the host's capacity (`GPU_HOSTS` "
                "`ip:capacity`) of requests at once per consumer. The same file may be sent "
                "again (retries, redelivery): answer the same way."
            ),
            "requestBody": {"required": True, "content": _json("ModelRequest")},
            "responses": responses,
        },
    }


def _health_path() -> dict[str, Any]:
    return {
        "servers": _servers(GPU_STAGES),
        "get": {
            "operationId": "health",
            "summary": "Whether the host can serve this port's stage",
            "description": (
                "Served on every stage's port. While a host's circuit is open, cofi probes it "
                f"with backoff and waits {HEALTH_TIMEOUT_S:g} s for an answer; only a 200 "
                f"lets a trial call through. {CIRCUIT}."
            ),
            "responses": {
                "200": {"description": "Ready", "content": _json("HealthResponse")},
                "503": {"description": "Not ready (loading)", "content": _json("ErrorResponse")},
            },
        },
    }


def build() -> dict[str, Any]:
    paths: dict[str, Any] = {f"/v1/{stage}": _stage_path(stage) for stage in GPU_STAGES}
    paths["/health"] = _health_path()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cofi GPU model API",
            "version": "1",
            "description": (
                "What every GPU host serves, one port per stage. Generated by `cofi "
                "contracts` from services/gpu_stage/model_contract.py, the settings and the "
                "client's retry rules; do not edit. See docs/gpu-model-api.md; check a host "
                "with `cofi check-host`."
            ),
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


def render_yaml() -> str:
    import yaml  # a development dependency: the documents are generated in the repository

    header = "# Generated by `cofi contracts` from the code; do not edit (a test checks it).\n"
    return header + yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)
