"""`python -m simulator`: run every simulated server until SIGTERM/SIGINT.

Prints exactly one `simulator ready` line on stdout once every socket listens, so scripts and
tests wait on that line instead of sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from simulator.config import load_config
from simulator.core import Simulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cofi run simulator", description=__doc__)
    p.add_argument(
        "--hosts",
        help="GPU hosts, e.g. 127.0.0.2,127.0.0.3 or 127.0.0.2:4,127.0.0.3:2 "
        "(:N = capacity); env SIM_HOSTS or GPU_HOSTS",
    )
    p.add_argument("--llm-port", type=int, help="LLM port (default 8000; env SIM_LLM_PORT)")
    p.add_argument(
        "--control-port", type=int, help="control API port (default 5099; env SIM_CONTROL_PORT)"
    )
    p.add_argument(
        "--latency-scale",
        type=float,
        help="multiplies every latency; 0 = instant (env SIM_LATENCY_SCALE)",
    )
    p.add_argument("--error-rate", type=float, help="GPU 503 probability (env SIM_ERROR_RATE)")
    p.add_argument(
        "--timeout-rate", type=float, help="GPU hang-then-504 probability (env SIM_TIMEOUT_RATE)"
    )
    p.add_argument("--ivr-rate", type=float, help="share of calls flagged IVR (env IVR_RATE)")
    p.add_argument("--seed", type=int, help="seed the fault dice (env SIM_SEED)")
    p.add_argument("--config", help="JSON config file (env SIM_CONFIG)")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    return p


async def serve(sim: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        print("simulator ready", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cli = vars(args).copy()
    cli.pop("log_level")
    try:
        config = load_config(cli)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"simulator: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(Simulator(config)))
    except OSError as exc:  # typically a port already in use
        print(f"simulator: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
