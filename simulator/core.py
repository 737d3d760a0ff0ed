"""The Simulator: every GPU (host, stage) server, the LLM server and the control API on one loop.

Tests use it in-process (`async with Simulator(config) as sim:`); `python -m simulator` wraps the
same object, so both paths exercise identical code.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from simulator.config import (
    STAGES,
    GpuKnobsUpdate,
    LlmKnobsUpdate,
    SimConfig,
    Stage,
)
from simulator.control import build_control_app
from simulator.gpu import GpuStageServer
from simulator.listener import Listener
from simulator.llm import LlmServer
from simulator.stats import Gauge

log = logging.getLogger(__name__)


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        seed = self.config.seed

        def rng(name: str) -> random.Random:
            # One independent, optionally seeded, stream per server: the fault dice of one
            # server do not shift when another server gets more traffic.
            return random.Random(f"{seed}:{name}") if seed is not None else random.Random()

        self.host_gauges: dict[str, Gauge] = {h.address: Gauge() for h in self.config.hosts}
        self.gpu: dict[tuple[str, Stage], GpuStageServer] = {}
        for host in self.config.hosts:
            for stage in STAGES:
                self.gpu[(host.address, stage)] = GpuStageServer(
                    host.address,
                    stage,
                    self.config.ports[stage],
                    self.config.gpu_knobs(host, stage),
                    host_gauge=self.host_gauges[host.address],
                    ivr_rate=self.config.ivr_rate,
                    languages=self.config.languages,
                    rng=rng(f"{host.address}/{stage}"),
                )
        self.llm = LlmServer(
            self.config.llm_host, self.config.llm_port, self.config.llm_knobs(), rng=rng("llm")
        )
        self.control = Listener(
            build_control_app(self), self.config.control_host, self.config.control_port
        )

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            for server in self.gpu.values():
                await server.start()
            await self.llm.start()
            await self.control.up()
        except BaseException:
            # A port clash half way must not leave the other sockets bound.
            await self.stop()
            raise

    async def stop(self) -> None:
        await self.control.close()
        await self.llm.close()
        for server in self.gpu.values():
            await server.close()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- addresses -------------------------------------------------------------------------
    def gpu_url(self, host: str, stage: Stage) -> str:
        return self.gpu[(host, stage)].url

    @property
    def llm_url(self) -> str:
        return self.llm.url

    @property
    def control_url(self) -> str:
        return self.control.url

    @property
    def hosts(self) -> list[str]:
        return [h.address for h in self.config.hosts]

    # -- control ---------------------------------------------------------------------------
    def _select(self, host: str | None, stage: Stage | None) -> list[GpuStageServer]:
        if host is not None and host not in self.host_gauges:
            raise KeyError(f"unknown host {host!r}")
        if stage is not None and stage not in STAGES:
            raise KeyError(f"unknown stage {stage!r}")
        return [
            server
            for (h, s), server in self.gpu.items()
            if (host is None or h == host) and (stage is None or s == stage)
        ]

    async def set_faults(
        self, host: str | None = None, stage: Stage | None = None, **knobs: Any
    ) -> dict[str, Any]:
        """Change GPU knobs on matching servers (None = all); returns their knobs afterwards."""
        update = GpuKnobsUpdate.model_validate(knobs)
        servers = self._select(host, stage)
        for server in servers:
            await server.apply(update)
        if knobs:
            log.info("faults host=%s stage=%s %s", host, stage, knobs)
        return self.faults(host, stage)

    async def set_llm_faults(self, **knobs: Any) -> dict[str, Any]:
        await self.llm.apply(LlmKnobsUpdate.model_validate(knobs))
        if knobs:
            log.info("llm faults %s", knobs)
        return self.llm.knobs.model_dump()

    def faults(self, host: str | None = None, stage: Stage | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"gpu": {}, "llm": self.llm.knobs.model_dump()}
        for server in self._select(host, stage):
            out["gpu"].setdefault(server.host, {})[server.stage] = server.knobs.model_dump()
        return out

    def reset(self) -> None:
        for server in self.gpu.values():
            server.stats.reset()
        for gauge in self.host_gauges.values():
            gauge.reset()
        self.llm.stats.reset()

    def health(self) -> dict[str, Any]:
        """Per-server state; ok when every server not deliberately down is listening."""
        servers: dict[str, str] = {}
        ok = True
        for server in self.gpu.values():
            name = f"{server.host}:{server.listener.port}/{server.stage}"
            servers[name] = _state(server.listener.listening, server.knobs.down)
            ok = ok and server.listener.listening != server.knobs.down
        servers[f"llm {self.llm.listener.host}:{self.llm.listener.port}"] = _state(
            self.llm.listener.listening, self.llm.knobs.down
        )
        ok = ok and self.llm.listener.listening != self.llm.knobs.down
        return {"ok": ok, "servers": servers}

    def stats(self) -> dict[str, Any]:
        gpu: dict[str, dict[str, Any]] = {
            key: {h: {} for h in self.hosts}
            for key in ("calls", "totals", "responses", "max_concurrency", "in_flight", "queued")
        }
        for (host, stage), server in self.gpu.items():
            st = server.stats
            gpu["calls"][host][stage] = dict(st.calls)
            gpu["totals"][host][stage] = st.total
            gpu["responses"][host][stage] = dict(st.responses)
            gpu["max_concurrency"][host][stage] = st.concurrency.peak
            gpu["in_flight"][host][stage] = st.concurrency.current
            gpu["queued"][host][stage] = server.slots.waiting
        gpu["host_max_concurrency"] = {h: g.peak for h, g in self.host_gauges.items()}
        gpu_calls = sum(s.stats.total for s in self.gpu.values())
        llm = self.llm.stats
        return {
            "gpu": gpu,
            "llm": {
                "calls": dict(llm.calls),
                "total": llm.total,
                "responses": dict(llm.responses),
                "max_concurrency_seen": llm.concurrency.peak,
                "in_flight": llm.concurrency.current,
            },
            "totals": {
                "gpu_calls": gpu_calls,
                "llm_calls": llm.total,
                "calls": gpu_calls + llm.total,
            },
        }


def _state(listening: bool, down: bool) -> str:
    if down:
        return "down" if not listening else "listening (should be down)"
    return "listening" if listening else "not listening"
