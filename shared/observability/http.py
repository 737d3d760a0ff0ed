"""The HTTP endpoint every service serves: `/metrics`, `/healthz`, `/readyz`."""

from aiohttp import web

from shared.metrics import EXPOSITION_CONTENT_TYPE, Metrics
from shared.observability.health import Readiness


def observability_app(metrics: Metrics, readiness: Readiness) -> web.Application:
    async def scrape(_: web.Request) -> web.Response:
        return web.Response(
            body=metrics.exposition(), headers={"Content-Type": EXPOSITION_CONTENT_TYPE}
        )

    async def alive(_: web.Request) -> web.Response:
        # Answering at all is the proof: the event loop runs.
        return web.json_response({"alive": True})

    async def ready(_: web.Request) -> web.Response:
        problems = readiness.problems()
        if problems:
            return web.json_response({"ready": False, "reasons": problems}, status=503)
        return web.json_response({"ready": True})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/healthz", alive)
    app.router.add_get("/livez", alive)  # Kubernetes' name for the liveness probe
    app.router.add_get("/readyz", ready)
    return app


class ObservabilityServer:
    def __init__(self, metrics: Metrics, readiness: Readiness, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.runner = web.AppRunner(observability_app(metrics, readiness), access_log=None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise OSError(
                exc.errno, f"cannot serve metrics on {self.host}:{self.port} (METRICS_PORT): {exc}"
            ) from exc

    async def stop(self) -> None:
        await self.runner.cleanup()
