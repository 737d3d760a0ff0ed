"""Each call through the host's four stages one at a time, as the pipeline would chain them."""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

STAGE_PORTS = {"denoise": 5010, "ivr": 5011, "lid": 5012, "stt": 5013}


@dataclass
class CallRun:
    file: Path
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def run_call(
    client: httpx.Client, ip: str, ports: dict[str, int], batch_id: str, path: Path
) -> CallRun:
    run = CallRun(path)
    uri = path.resolve().as_uri()
    for stage in ports:
        inputs = {"language": run.answers["lid"]["language"]} if stage == "stt" else {}
        body = {"batch_id": batch_id, "file_name": path.name, "audio_uri": uri, "inputs": inputs}
        t0 = time.perf_counter()
        response = client.post(f"http://{ip}:{ports[stage]}/v1/{stage}", json=body)
        run.seconds[stage] = time.perf_counter() - t0
        response.raise_for_status()
        run.answers[stage] = response.json()
        if stage == "denoise":
            uri = run.answers[stage]["denoised_uri"]
    return run
