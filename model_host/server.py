"""One HTTP listener per (IP, stage), sharing the host's models and its model slots.

Order per request: parse (400) -> model loaded? (503) -> queue admission (429) -> wait for a
slot -> run the model in a worker thread (404/422 from the audio, 500 from the model) -> 200.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from model_host.api import ModelRequest, Stage
from model_host.audio import AudioProblem
from model_host.models import Models
from model_host.settings import HostSettings

log = logging.getLogger(__name__)
RETRY_AFTER_S = "2"


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


class Host:
    """The models (None while they load) and the slots every stage's calls share."""

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self.models: Models | None = None
        self.load_error: str | None = None
        self.slots = asyncio.Semaphore(settings.workers)
        self.waiting: dict[str, int] = {}

    async def load(self) -> None:
        try:
            self.models = await asyncio.to_thread(Models.load, self.settings)
        except Exception as exc:
            self.load_error = f"models failed to load: {exc}"
            raise

    def runner(self, stage: Stage) -> Callable[[ModelRequest], BaseModel]:
        assert self.models is not None
        run: Callable[[ModelRequest], BaseModel] = getattr(self.models, stage)
        return run


def stage_app(host: Host, stage: Stage, ip: str) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        if host.models is None:
            return _error(503, host.load_error or "models loading", **{"Retry-After": "5"})
        return web.json_response({"status": "ok", "stage": stage})

    async def handle(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
            call = ModelRequest.model_validate(body)
        except (ValueError, ValidationError) as exc:
            return _error(400, f"{stage} on {ip}: bad request: {exc}")
        if host.models is None:
            reason = host.load_error or "models loading"
            return _error(503, f"{stage} on {ip}: {reason}", **{"Retry-After": RETRY_AFTER_S})
        waiting = host.waiting.get(stage, 0)
        if waiting >= host.settings.queue_limit + host.settings.workers:
            return _error(429, f"{stage} on {ip}: queue full", **{"Retry-After": RETRY_AFTER_S})
        host.waiting[stage] = waiting + 1
        try:
            async with host.slots:
                answer = await asyncio.to_thread(host.runner(stage), call)
        except AudioProblem as exc:
            return _error(exc.status, f"{stage} on {ip}: {call.file_name}: {exc}")
        except Exception as exc:
            log.exception("%s on %s failed on %s", stage, ip, call.file_name)
            return _error(500, f"{stage} on {ip}: {call.file_name}: model failed: {exc!r}")
        finally:
            host.waiting[stage] -= 1
        return web.json_response(answer.model_dump(mode="json"))

    app = web.Application()
    app.router.add_post(f"/v1/{stage}", handle)
    app.router.add_get("/health", health)
    return app
