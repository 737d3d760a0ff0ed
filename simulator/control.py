"""Control/stats HTTP API, so crash tests running the simulator as a process can drive faults.

GET /stats, GET /faults, POST /faults, POST /reset, GET /healthz.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import ValidationError

from simulator.config import GpuKnobsUpdate, LlmKnobsUpdate

if TYPE_CHECKING:
    from simulator.core import Simulator

SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator")


def _sim(request: web.Request) -> Simulator:
    return request.app[SIM_KEY]


async def stats(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).stats())


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).faults())


async def post_faults(request: web.Request) -> web.Response:
    """`{"host"?, "stage"?, <gpu knobs>...}` and/or `{"llm": {<llm knobs>}}`."""
    sim = _sim(request)
    try:
        body = json.loads(await request.read())
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        llm = body.pop("llm", None)
        if llm is not None and not isinstance(llm, dict):
            raise ValueError("'llm' must be an object")
        host = body.pop("host", None)
        stage = body.pop("stage", None)
        # Validate everything before changing anything, so a bad request changes nothing.
        sim.faults(host, stage)
        GpuKnobsUpdate.model_validate(body)
        LlmKnobsUpdate.model_validate(llm or {})
        if body:
            await sim.set_faults(host, stage, **body)
        if llm:
            await sim.set_llm_faults(**llm)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        return web.json_response({"error": errors}, status=400)
    except (ValueError, KeyError) as exc:
        # KeyError's str() adds quotes; its argument is the readable message.
        return web.json_response({"error": str(exc.args[0] if exc.args else exc)}, status=400)
    return web.json_response(sim.faults(host, stage))


async def reset(request: web.Request) -> web.Response:
    _sim(request).reset()
    return web.json_response({"reset": True})


async def healthz(request: web.Request) -> web.Response:
    health = _sim(request).health()
    return web.json_response(health, status=200 if health["ok"] else 503)


def build_control_app(sim: Simulator) -> web.Application:
    app = web.Application()
    app[SIM_KEY] = sim
    app.router.add_get("/stats", stats)
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", post_faults)
    app.router.add_post("/reset", reset)
    app.router.add_get("/healthz", healthz)
    return app
