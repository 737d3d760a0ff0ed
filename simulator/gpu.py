"""One simulated GPU model server: a (host, stage) pair listening on <host>:<stage port>.

Request handling order, chosen to mimic a real model server behind a bounded worker pool:
parse (400) -> queue admission (429) -> wait for a slot -> injected fault (503 at once, or hang
then 504) -> decode the audio (404/422) -> model time (base + real-time factor x the call's
length, see `model_time_s`) -> deterministic output (200).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from simulator.audio import AudioError, load_audio
from simulator.config import GpuKnobs, GpuKnobsUpdate, Stage
from simulator.listener import Listener
from simulator.outputs import oversize, stage_output, wrong_types
from simulator.slots import Slots
from simulator.stats import Gauge, ServerStats

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    pass


def parse_request(body: bytes) -> tuple[str, str, str, dict[str, Any]]:
    """Validate a stage request body -> (batch_id, file_name, audio_uri, inputs)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    fields = []
    for key in ("batch_id", "file_name", "audio_uri"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"{key!r} must be a non-empty string")
        fields.append(value)
    inputs = data.get("inputs", {})
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        raise BadRequest("'inputs' must be a JSON object")
    return fields[0], fields[1], fields[2], inputs


def model_time_s(knobs: GpuKnobs, call_s: float, jitter_s: float = 0.0) -> float:
    """One file's model time: base + real-time factor x the call seconds the model reads."""
    heard = call_s if knobs.window_s is None else min(call_s, knobs.window_s)
    return (knobs.latency_s + knobs.rtf * heard + jitter_s) * knobs.latency_scale


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class GpuStageServer:
    def __init__(
        self,
        host: str,
        stage: Stage,
        port: int,
        knobs: GpuKnobs,
        *,
        host_gauge: Gauge,
        ivr_rate: float,
        languages: Mapping[str, float],
        rng: random.Random,
    ) -> None:
        self.host = host
        self.stage = stage
        self.knobs = knobs
        self.stats = ServerStats()
        self.slots = Slots(knobs.capacity, knobs.queue_limit)
        self._host_gauge = host_gauge
        self._ivr_rate = ivr_rate
        self._languages = dict(languages)
        self._rng = rng
        app = web.Application()
        app.router.add_post(f"/v1/{stage}", self._handle)
        app.router.add_get("/health", self._health)
        self.listener = Listener(app, host, port)

    @property
    def url(self) -> str:
        return f"{self.listener.url}/v1/{self.stage}"

    async def start(self) -> None:
        await self.listener.up()
        if self.knobs.down:
            await self.listener.down()

    async def close(self) -> None:
        await self.listener.close()

    async def apply(self, update: GpuKnobsUpdate) -> None:
        for key, value in update.model_dump(exclude_none=True).items():
            setattr(self.knobs, key, value)
        self.slots.resize(update.capacity, update.queue_limit)
        if update.down is True:
            await self.listener.down()
        elif update.down is False:
            await self.listener.up()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "stage": self.stage})

    async def _handle(self, request: web.Request) -> web.Response:
        status = "dropped"  # what we record if the client vanishes mid-request
        try:
            response = await self._serve(request)
            status = str(response.status)
            return response
        finally:
            self.stats.responses[status] += 1

    async def _serve(self, request: web.Request) -> web.Response:
        try:
            _batch_id, file_name, audio_uri, _inputs = parse_request(await request.read())
        except BadRequest as exc:
            return _error(400, f"bad request: {exc}")
        self.stats.calls[file_name] += 1

        if not await self.slots.acquire():
            return _error(429, "queue full", **{"Retry-After": "1"})
        try:
            with self.stats.concurrency.track(), self._host_gauge.track():
                return await self._run_model(file_name, audio_uri)
        finally:
            self.slots.release()

    async def _run_model(self, file_name: str, audio_uri: str) -> web.Response:
        knobs = self.knobs
        roll = self._rng.random()
        if roll < knobs.error_rate:
            # Retry-After as the contract asks; 0 leaves the client's own backoff in charge.
            return _error(503, f"{self.stage} model unavailable (injected)", **{"Retry-After": "0"})
        if roll < knobs.error_rate + knobs.timeout_rate:
            # Hold the slot like a stuck GPU kernel would; the client normally times out first.
            await asyncio.sleep(knobs.hang_s)
            return _error(504, f"{self.stage} model timed out (injected)")

        try:
            # Decoding is blocking file I/O: keep it off the event loop. A model server reads
            # the audio before it runs the model, so a bad file fails fast.
            audio = await asyncio.to_thread(load_audio, audio_uri)
        except AudioError as exc:
            return _error(exc.status, exc.message)

        jitter = self._rng.uniform(0.0, knobs.jitter_s)
        await asyncio.sleep(model_time_s(knobs, audio.duration_s, jitter))
        output = stage_output(
            self.stage,
            file_name,
            audio_uri,
            audio,
            ivr_rate=self._ivr_rate,
            languages=self._languages,
        )
        roll = self._rng.random()
        if roll < knobs.wrong_types_rate:
            output = wrong_types(output)
        elif roll < knobs.wrong_types_rate + knobs.oversize_rate:
            output = oversize(output)
        return web.json_response(output)
