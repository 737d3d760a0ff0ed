"""An aiohttp app whose listening socket can be closed and reopened at runtime.

A host that is "down" must refuse connections (the client sees ECONNREFUSED, a transient error),
not answer 503; so going down closes the listening socket and drops open keep-alive connections,
and coming up binds the same address again.
"""

from __future__ import annotations

import asyncio

from aiohttp import web


class Listener:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.host = host
        self.port = port
        # handler_cancellation: a dropped connection cancels its handler, so a hung request
        # frees its capacity slot when the client gives up or the host goes down.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        self._site: web.TCPSite | None = None
        self._set_up = False

    @property
    def listening(self) -> bool:
        return self._site is not None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def up(self) -> None:
        if not self._set_up:
            await self._runner.setup()
            self._set_up = True
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site = site
        if self.port == 0:
            # Keep the ephemeral port so that coming back up reuses the same address.
            self.port = self._runner.addresses[0][1]

    async def down(self) -> None:
        if self._site is None:
            return
        site, self._site = self._site, None
        await site.stop()
        server = self._runner.server
        if server is not None:
            for conn in server.connections:
                conn.force_close()
        # transport.close() closes the socket on the next loop turn; yield once so that, when
        # down() returns, peers already see the connection closed, not a half-dead one.
        await asyncio.sleep(0)

    async def close(self) -> None:
        await self.down()
        if self._set_up:
            await self._runner.cleanup()
            self._set_up = False
