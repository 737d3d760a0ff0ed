"""Write docs/gpu-model-api.yaml (OpenAPI 3.1) and docs/gpu-model-api.md from the code.

Requests and responses are the models of `services/gpu_stage/model_contract.py`; ports are
the settings' defaults; what each answer means to cofi is found by running the real client
(`services.gpu_stage.model_api.call_model`) against each answer, so the table cannot drift
from the retry rules (`shared/retry.py`).
"""

import asyncio
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.gpu_stage.model_api import call_model
from services.gpu_stage.model_contract import RESPONSES, ErrorResponse, ModelRequest
from services.gpu_stage.settings import GpuStageSettings
from shared.model_http import ModelApiClient
from shared.stages import GPU_STAGES

ROOT = Path(__file__).resolve().parent.parent
YAML_PATH = ROOT / "docs" / "gpu-model-api.yaml"
MD_PATH = ROOT / "docs" / "gpu-model-api.md"
SCHEMAS = "#/components/schemas/{model}"

# Answers a model server gives, and when it should give them.
STATUSES: tuple[tuple[int, str], ...] = (
    (400, "the request is not what this document describes"),
    (404, "the audio file does not exist"),
    (422, "the audio cannot be decoded (empty, corrupt, unsupported format)"),
    (429, "the host is at capacity (its queue is full); send `Retry-After` in seconds"),
    (500, "the model failed on this request"),
    (503, "the model is unavailable (loading, restarting, out of memory)"),
    (504, "the model did not finish in time"),
)
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


@dataclass(frozen=True)
class Answer:
    what: str  # the answer, as a reader would name it
    when: str  # when a host gives it
    kind: str  # cofi's classification, from the real client
    unreachable: bool = False


def _classify(reply: httpx.Response | Exception) -> tuple[str, bool]:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def probe() -> tuple[str, bool]:
        async with ModelApiClient(httpx.MockTransport(handler), 30.0) as client:
            outcome = await call_model(client, "http://host:1/v1/stage", {}, 30.0)
        return outcome.error_kind or "ok", outcome.unreachable

    return asyncio.run(probe())


@cache
def answers() -> tuple[Answer, ...]:
    out = []
    kind, _ = _classify(httpx.Response(200, json={"any": "object"}))
    out.append(Answer("200, a JSON object", "the model ran", kind))
    kind, _ = _classify(httpx.Response(200, text="not json"))
    out.append(Answer("200, not a JSON object", "(a broken proxy or server)", kind))
    for status, when in STATUSES:
        kind, _ = _classify(httpx.Response(status, json={"error": when}))
        out.append(Answer(str(status), when, kind))
    kind, _ = _classify(httpx.ReadTimeout("slow"))
    out.append(Answer("no answer within `GPU_REQUEST_TIMEOUT_S`", "a stuck model", kind))
    kind, unreachable = _classify(httpx.ConnectError("refused"))
    out.append(Answer("connection refused or reset", "the server is down", kind, unreachable))
    return tuple(out)


SHORT = {
    "ok": "success: the file moves on",
    "transient": "**transient**: retried, then the file fails",
    "permanent": "**permanent**: the file fails at once",
}
DEAD_HOST = (
    "a host that refuses connections (or answers 401/403, or a storm of 5xx) pauses the "
    "stage, which probes `GET /health` with backoff and resumes when it answers; its files "
    "wait. Down past `GPU_HOST_FAILOVER_DEADLINE_S`, its files are handed back to the "
    "distributor for another host"
)
SUCCESS = (
    "the stage's fields are read into the file's context and the file moves on; a missing or "
    "invalid field fails the file (permanent, `malformed <stage> response`)"
)


def meaning(answer: Answer, short: bool = False) -> str:
    if short:
        return SHORT[answer.kind] + (
            "; the host may be declared dead" if answer.unreachable else ""
        )
    text = {"ok": SUCCESS, "transient": TRANSIENT, "permanent": PERMANENT}[answer.kind]
    return text + (f"; {DEAD_HOST}" if answer.unreachable else "")


def _ports() -> dict[str, int]:
    settings = GpuStageSettings.model_fields
    return {stage: settings[f"{stage}_port"].default for stage in GPU_STAGES}


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [ModelRequest, ErrorResponse, *RESPONSES.values()]
    _, schema = models_json_schema([(m, "validation") for m in models], ref_template=SCHEMAS)
    defs: dict[str, Any] = schema["$defs"]
    return defs


def build() -> dict[str, Any]:
    ports = _ports()
    timeout = GpuStageSettings.model_fields["gpu_request_timeout_s"].default
    paths: dict[str, Any] = {}
    for stage in GPU_STAGES:
        model = RESPONSES[stage]
        responses: dict[str, Any] = {
            "200": {
                "description": f"{(model.__doc__ or '').strip()} Cofi: {meaning(answers()[0])}.",
                "content": {
                    "application/json": {"schema": {"$ref": SCHEMAS.format(model=model.__name__)}}
                },
            }
        }
        for answer in answers():
            if not answer.what.isdigit():
                continue
            responses[answer.what] = {
                "description": f"When {answer.when}. Cofi: {meaning(answer)}.",
                "content": {
                    "application/json": {"schema": {"$ref": SCHEMAS.format(model="ErrorResponse")}}
                },
            }
            if answer.what == "429":
                responses["429"]["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying (a floor for cofi)",
                        "schema": {"type": "number", "minimum": 0},
                    }
                }
        paths[f"/v1/{stage}"] = {
            "servers": [
                {
                    "url": f"http://{{host}}:{ports[stage]}",
                    "description": f"every GPU host, port `{stage.upper()}_PORT`",
                    "variables": {"host": {"default": "127.0.0.2"}},
                }
            ],
            "post": {
                "operationId": stage,
                "summary": f"Run the {stage} model on one file",
                "description": (
                    f"cofi waits up to `GPU_REQUEST_TIMEOUT_S` ({timeout:g} s by default) and "
                    "sends at most the host's capacity (`GPU_HOSTS` `ip:capacity`) of requests "
                    "at once per consumer. The same file may be sent again (retries, "
                    "redelivery): answer the same way."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": SCHEMAS.format(model="ModelRequest")}
                        }
                    },
                },
                "responses": responses,
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cofi GPU model API",
            "version": "1",
            "description": (
                "What every GPU host serves, one port per stage. Generated by `cofi "
                "contracts` from services/gpu_stage/model_contract.py, the settings and the "
                "client's retry rules; do not edit. See docs/gpu-model-api.md."
            ),
        },
        "paths": paths,
        "components": {"schemas": _schemas()},
    }


def render_yaml() -> str:
    import yaml  # a development dependency: the documents are generated in the repository

    header = "# Generated by `cofi contracts` from the code; do not edit (a test checks it).\n"
    return header + yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown() -> str:
    ports = _ports()
    lines = [
        "# The GPU model API",
        "",
        "<!-- Generated by `cofi contracts` from the code; edit "
        "services/gpu_stage/model_contract.py or cli/gpu_api.py, not this file. -->",
        "",
        "Every GPU host serves one HTTP endpoint per stage; the machine-readable contract is "
        "[gpu-model-api.yaml](gpu-model-api.yaml) (OpenAPI 3.1).",
        "",
        "| stage | endpoint (default port, setting) | cofi reads from the answer |",
        "|---|---|---|",
    ]
    for stage in GPU_STAGES:
        model = RESPONSES[stage]
        fields = ", ".join(f"`{name}`" for name, f in model.model_fields.items() if f.is_required())
        lines.append(
            f"| {stage} | `POST http://<host>:{ports[stage]}/v1/{stage}` "
            f"(`{stage.upper()}_PORT`) | {fields} |"
        )
    lines += [
        "",
        "The request is the same for every stage:",
        "",
        "```json",
        ModelRequest(
            batch_id="batch-42",
            file_name="call-0001.wav",
            audio_uri="file:///data/audio/batch-42/call-0001.wav",
            inputs={"language": "en"},
        ).model_dump_json(indent=2),
        "```",
        "",
        "`inputs.language` is sent to `stt` only. Answer `200` with a JSON object holding at "
        "least the fields above (more are kept in `processing_logs`), or an error status with "
        '`{"error": "…"}`. The same file may arrive more than once (retries, redelivery after '
        "a crash): answer it the same way.",
        "",
        "## Answers and what each means to cofi",
        "",
        "| answer | send it when | what cofi does |",
        "|---|---|---|",
        *(f"| {a.what} | {_cell(a.when)} | {_cell(meaning(a, short=True))} |" for a in answers()),
        "",
        f"- **Success**: {SUCCESS}.",
        f"- **Transient**: {TRANSIENT}.",
        f"- **Permanent**: {PERMANENT}.",
        f"- **Dead host**: {DEAD_HOST}.",
        "",
        "Any other `4xx` is treated like `400` and any other `5xx` like `500`. Every attempt, "
        "with its status and error text, is a row of `processing_logs`.",
        "",
    ]
    return "\n".join(lines)
