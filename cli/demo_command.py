"""`cofi demo`: one batch through the whole pipeline, started and stopped here."""

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from cli.errors import Exit
from cli.options import call_length_options, checked_database_url, lengths, positive, settings
from services.tracker.settings import TrackerSettings

if TYPE_CHECKING:
    from cli.options import Subcommands


def add(sub: "Subcommands") -> None:
    p = sub.add_parser("demo", help="run one batch through the whole pipeline")
    p.add_argument(
        "--files", type=positive(int), default=300, help="files in the batch (%(default)s)"
    )
    p.add_argument("--corrupt", type=int, default=5, help="of them, undecodable ones (%(default)s)")
    p.add_argument(
        "--short", type=int, default=5, help="of them, ones under a second (%(default)s)"
    )
    p.add_argument(
        "--timeout",
        type=positive(float),
        default=600.0,
        help="seconds to wait for the batch to finish (%(default)s)",
    )
    p.add_argument(
        "--latency-scale",
        type=float,
        default=0.05,
        help="multiplies the simulator's model times (1 = a real GPU on real call lengths, "
        "simulator/README.md); 0 answers at once (%(default)s)",
    )
    call_length_options(p)
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".cache/demo"),
        help="where the audio and the services' logs go (%(default)s)",
    )
    p.set_defaults(func=demo)


def demo(ns: argparse.Namespace) -> int:
    from cli.demo import run_demo
    from cli.local_stack import PipelineConfig
    from cli.processes import exit_on_sigterm

    s = settings(TrackerSettings, ns)
    config = PipelineConfig(
        bootstrap=s.kafka_bootstrap_servers,
        topic_prefix=s.topic_prefix,
        gpu_hosts=",".join(
            f"{h.ip}:{h.capacity}" + (":down" if h.down else "") for h in s.gpu_hosts
        ),
        database_url=checked_database_url(s.resolved_database_url),
        latency_scale=ns.latency_scale,
    )
    exit_on_sigterm()
    ok = asyncio.run(
        run_demo(config, ns.files, ns.corrupt, ns.short, ns.timeout, ns.workdir, lengths(ns))
    )
    return Exit.OK if ok else Exit.REFUSED
