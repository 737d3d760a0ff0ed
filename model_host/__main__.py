"""`python -m model_host --hosts 127.0.0.2`: serve every stage on each IP until SIGTERM.

Prints one `model host ready` line once every port listens and the models are loaded (before
that the stage routes and /health answer 503 with Retry-After).
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from model_host.api import STAGES
from model_host.server import Host, stage_app
from model_host.settings import HostSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_host", description=__doc__)
    p.add_argument(
        "--hosts",
        default=os.environ.get("MODEL_HOST_IPS", "127.0.0.1"),
        help="IPs to listen on, e.g. 127.0.0.2,127.0.0.3 (a `:capacity` suffix is ignored); "
        "env MODEL_HOST_IPS",
    )
    p.add_argument("--log-level", default="INFO")
    return p


async def serve(settings: HostSettings, ips: list[str]) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    host = Host(settings)
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        for ip in ips:
            for stage in STAGES:
                runner = web.AppRunner(stage_app(host, stage, ip), access_log=None)
                await runner.setup()
                runners.append(runner)
                await web.TCPSite(runner, ip, settings.port(stage)).start()
        await host.load()
        print("model host ready", flush=True)
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Nothing is fetched at run time: the hub client must not try.
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        settings = HostSettings()
    except ValidationError as exc:
        print(f"model host: bad settings: {exc}", file=sys.stderr)
        return 2
    ips = [h.split(":")[0].strip() for h in args.hosts.split(",") if h.strip()]
    try:
        asyncio.run(serve(settings, ips))
    except OSError as exc:
        print(f"model host: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
